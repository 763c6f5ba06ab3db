"""`chronik demo bank` as a user runs it: twice on the default file, once on a SQLite file and on
PostgreSQL (`process_store_url`); its accounts inspectable by `state`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.test_subprocess import run_chronik

NARRATED = (
    "completed",
    "rejected",
    "compensated",
    "already done = True",
    "TransferRefunded",
    "(entered late)",
    "(not known yet)",
    "the books balance",
)
"""What every run tells: the transfers' three endings, the acknowledged re-send, the compensation
in the trail, the late entry in the statement, the books balanced."""


def assert_a_fresh_story(text: str) -> None:
    """A run on an empty store: the clock starts in 2021, and the back-dated entry changes the year."""
    assert "on 2021-03-01: €1,200.00" in text
    late = re.search(r"knew it yesterday (-?€[\d,]+\.\d\d), as it knows it today (-?€[\d,]+\.\d\d)", text)
    assert late is not None and late.group(1) != late.group(2)


def assert_alice_inspectable(text: str, cwd: Path) -> None:
    """The demo's closing hints work in another process: Alice now, and five years ago."""
    account = re.search(r"chronik state (account-alice-[0-9a-f]+) --store (\S+)", text)
    moment = re.search(r"--occurred-as-of (\S+)", text)
    assert account is not None and moment is not None
    store = ("--store", account.group(2))
    shown = run_chronik("state", account.group(1), *store, cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    now = json.loads(shown.stdout)
    assert (now["aggregate"], now["state"]["owner"], now["state"]["status"]) == ("Account", "Alice", "open")
    then = json.loads(
        run_chronik("state", account.group(1), "--occurred-as-of", moment.group(1), *store, cwd=cwd).stdout
    )
    assert then["state"]["balance_cents"] == 120_000


def test_the_bank_demo_tells_its_story_twice_on_one_file(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):
        done = run_chronik("demo", "bank", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    for expected in NARRATED:
        assert expected in outputs[1], expected
    assert_a_fresh_story(outputs[0])
    assert not (tmp_path / "chronik.db").exists()  # the demo's future-bound clock keeps off the main store
    assert_alice_inspectable(outputs[1], tmp_path)


def test_the_bank_demo_tells_its_story_on_a_given_store(process_store_url: str, tmp_path: Path) -> None:
    """Issue #6.3: on a SQLite file and on PostgreSQL (a fresh schema), the same narrated facts."""
    done = run_chronik("demo", "bank", "--store", process_store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for expected in NARRATED:
        assert expected in done.stdout, expected
    assert_a_fresh_story(done.stdout)
    assert "(this store keeps no SQL read models" not in done.stdout  # the projections took part
    assert "Alice's last months" in done.stdout
    assert_alice_inspectable(done.stdout, tmp_path)


def test_the_bank_demo_refuses_to_push_a_given_store_into_the_future(
    process_store_url: str, tmp_path: Path
) -> None:
    assert run_chronik("demo", "cart", "--store", process_store_url, cwd=tmp_path).returncode == 0  # today
    refused = run_chronik("demo", "bank", "--store", process_store_url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "in the future" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_on_a_memory_store_the_demo_suggests_no_command_that_cannot_find_it(tmp_path: Path) -> None:
    """Review finding: `--store memory://` ended with `chronik state ... --store memory://`, which a
    new process runs against a new, empty store."""
    done = run_chronik("demo", "bank", "--store", "memory://", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the books balance" in done.stdout
    assert "chronik state account-" not in done.stdout and "--store memory://" not in done.stdout
    assert "it is gone when the demo ends" in done.stdout
