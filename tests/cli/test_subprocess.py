"""The CLI as a user runs it: a real process, real exit codes, the SQLite default in the working directory."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chronik.events.envelope import NewEvent
from chronik.store import open_store


def run_chronik(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CHRONIK_STORE"}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "chronik", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cart_demo_runs_twice_on_its_own_file_and_its_cart_can_be_inspected(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):
        done = run_chronik("demo", "cart", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert (tmp_path / "chronik-cart-demo.db").exists()
    for text in ("Facts are appended", "Hydration", "Time travel", "product update", "conflict detected"):
        assert text in outputs[1]
    assert "retried on fresh prices: bob pays €5.50" in outputs[1]
    assert "= €29.00" in outputs[1]
    carts = [re.search(r"cart: (cart-[0-9a-f]+)", text) for text in outputs]
    assert all(carts) and carts[0] != carts[1]
    stream = carts[1].group(1)  # type: ignore[union-attr]
    hint = re.search(rf"chronik state {stream} --store (\S+)", outputs[1])  # the demo's closing hint
    assert hint is not None and hint.group(1) == "sqlite:///./chronik-cart-demo.db"
    store = ("--store", hint.group(1))
    shown = run_chronik("state", stream, *store, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert (state["aggregate"], state["state"]["checked_out"], state["state"]["total_cents"]) == (
        "Cart",
        True,
        2900,
    )
    before = json.loads(run_chronik("state", stream, "--version", "1", *store, cwd=tmp_path).stdout)
    assert before["state"]["items"] == {f"tea-{stream[5:]}": 2, f"mug-{stream[5:]}": 1}


def store_files(folder: Path, name: str) -> dict[str, tuple[str, int]]:
    """A SQLite store's files (the database, its WAL and shared memory) by name: content hash and mtime."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.glob(f"{name}*"))
    }


@pytest.mark.parametrize("demo", ["cart", "bank"])
def test_a_demo_keeps_to_its_own_store_and_leaves_chronik_db_alone(tmp_path: Path, demo: str) -> None:
    """Issue #17.6: `chronik demo video` wrote into the `./chronik.db` of a running `serve --demo`,
    whose workers took its jobs. Each demo uses a file of its own unless given --store, and says
    which at the start. (`chronik demo video` is checked the same way in test_video_demo.py.)"""
    server_store = f"sqlite:///{tmp_path / 'chronik.db'}"
    with open_store(server_store) as store:
        store.append("server-1", [NewEvent(type="Started", data={})])
    before = store_files(tmp_path, "chronik.db")
    done = run_chronik("demo", demo, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert store_files(tmp_path, "chronik.db") == before  # not opened for writing, not changed
    first_line = done.stdout.splitlines()[1]  # the first, under the title
    assert first_line == f"store: sqlite:///./chronik-{demo}-demo.db"
    assert (tmp_path / f"chronik-{demo}-demo.db").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("append", "cart-1", "ItemAdded", "{oops"), 1, "DATA_JSON is not valid JSON"),
        (("read", "cart-404"), 1, "no store at './chronik.db'"),  # reading never creates the store
        (("read", "--limit", "x", "cart-1"), 2, "--limit"),
    ],
)
def test_mistakes_give_a_message_and_an_exit_code_never_a_traceback(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    done = run_chronik(*args, cwd=tmp_path)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "chronik.db").exists()  # a refused command leaves no store behind


def test_reading_a_stream_that_is_not_there_names_it(tmp_path: Path) -> None:
    assert run_chronik("append", "cart-1", "ItemAdded", cwd=tmp_path).returncode == 0
    done = run_chronik("read", "cart-404", cwd=tmp_path)
    assert done.returncode == 1
    assert "stream 'cart-404' not found" in done.stderr


def test_a_stale_expected_version_exits_1_naming_both_versions(tmp_path: Path) -> None:
    assert (
        run_chronik("append", "cart-1", "ItemAdded", "-", cwd=tmp_path, input='{"sku":"tea"}').returncode == 0
    )
    done = run_chronik("append", "cart-1", "CheckedOut", "--expected-version", "5", cwd=tmp_path)
    assert done.returncode == 1
    assert "expected 5, found version 0" in done.stderr


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("append", "cli-1", "T", "{}", "--occurred-at"), "--occurred-at"),
        (("state", "cart-x", "--as-of"), "--as-of"),
        (("state", "cart-x", "--occurred-as-of"), "--occurred-as-of"),
        (("projections", "rebuild", "carts_by_status", "--as-of"), "--as-of"),
    ],
)
def test_a_time_off_the_calendar_is_one_line_naming_the_option_and_the_range(
    tmp_path: Path, args: tuple[str, ...], option: str, moment: str
) -> None:
    """Converting these to UTC leaves Python's calendar: before, each printed an OverflowError's traceback."""
    assert (
        run_chronik("append", "cart-x", "ItemAdded", '{"sku": "tea", "quantity": 1}', cwd=tmp_path).returncode
        == 0
    )
    done = run_chronik(*args, moment, cwd=tmp_path)
    assert done.returncode == 2, done.stderr  # a value on the command line that cannot be right
    assert done.stderr.strip().splitlines() == [
        f"error: {option} {moment} is out of range: times must fall on a date from 0001-01-02 to "
        "9999-12-30 (as written, in any UTC offset)"
    ]
    assert "cli-1" not in run_chronik("read", "--all", "--json", cwd=tmp_path).stdout  # nothing written


def test_the_first_and_last_times_taken_work_from_the_cli(tmp_path: Path) -> None:
    first, last = "0001-01-02T00:00:00+14:00", "9999-12-30T23:59:59-14:00"
    item = '{"sku": "tea", "quantity": 1}'
    assert (
        run_chronik("append", "cart-x", "ItemAdded", item, "--occurred-at", first, cwd=tmp_path).returncode
        == 0
    )
    shown = run_chronik("state", "cart-x", "--occurred-as-of", last, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"]["items"] == {"tea": 1}
    read = json.loads(run_chronik("read", "cart-x", "--json", cwd=tmp_path).stdout)
    assert read["occurred_at"] == "0001-01-01T10:00:00+00:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("read", "nope"), "stream 'nope' not found"),
        (("history", "nope"), "stream 'nope' not found"),
        (("state", "cart-nope"), "aggregate stream 'cart-nope' has no events"),
        (("state", "nope"), "no aggregate type is registered for category 'nope'"),
        (("trace", "nope"), "no event carries correlation id 'nope'"),
        (("projections", "rebuild", "nope"), "no projection named 'nope'"),
        (("projections", "run", "nope", "--once"), "no projection named 'nope'"),
        (("projections", "drop-scratch", "nope"), "no projection named 'nope'"),
        (("projections", "drop-scratch", "carts_by_status", "nolabel"), "has no scratch set 'nolabel'"),
        (("reconcile", "nope"), "no projection named 'nope'"),
        (("groups", "status", "nope"), "consumer group 'nope' not found"),
        (("groups", "parked", "nope"), "consumer group 'nope' not found"),
        (
            ("groups", "replay-parked", "nope", "--handler", "chronik.server.demo:seed_cart"),
            "group 'nope' not found",
        ),
        (("groups", "discard-parked", "nope", "1", "2"), "consumer group 'nope' not found"),
        (("video", "retry", "nope"), "no video 'nope'"),
        (("keys", "revoke", "000000000000"), "no active key '000000000000'"),
    ],
)
def test_whatever_a_command_looks_up_not_found_is_exit_1_and_one_line_naming_it(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """One convention (docs/CLI.md): `groups discard-parked nope` exited 0, `projections rebuild nope` 2."""
    assert (
        run_chronik("append", "cart-1", "ItemAdded", '{"sku": "tea", "quantity": 1}', cwd=tmp_path).returncode
        == 0
    )
    done = run_chronik(*args, cwd=tmp_path)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
