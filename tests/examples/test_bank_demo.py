"""`chronik demo bank` as a user runs it: twice on the default file; its accounts inspectable by `state`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.test_subprocess import run_chronik


def test_the_bank_demo_tells_its_story_twice_on_one_file(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):
        done = run_chronik("demo", "bank", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    text = outputs[1]
    for expected in (
        "completed",
        "rejected",
        "compensated",
        "already done = True",
        "TransferRefunded",
        "(entered late)",
        "(not known yet)",
        "the books balance",
    ):
        assert expected in text, expected
    assert "on 2021-03-01: 1,200.00 EUR" in outputs[0]  # a fresh file starts the clock in 2021
    first_then = re.search(
        r"as the bank knew it yesterday (\S+) EUR, as it knows it today (\S+) EUR", outputs[0]
    )
    assert first_then is not None and first_then.group(1) != first_then.group(2)  # the late entry shows
    account = re.search(r"chronik state (account-alice-[0-9a-f]+) --store (\S+)", text)
    assert account is not None
    store = ("--store", account.group(2))
    assert not (tmp_path / "chronik.db").exists()  # the demo's future-bound clock keeps off the main store
    now = json.loads(run_chronik("state", account.group(1), *store, cwd=tmp_path).stdout)
    assert (now["aggregate"], now["state"]["owner"], now["state"]["status"]) == ("Account", "Alice", "open")
    moment = re.search(r"--occurred-as-of (\S+)", text)
    assert moment is not None
    then = json.loads(
        run_chronik(
            "state", account.group(1), "--occurred-as-of", moment.group(1), *store, cwd=tmp_path
        ).stdout
    )
    assert then["state"]["balance_cents"] == 120_000


def test_the_bank_demo_refuses_to_push_a_given_store_into_the_future(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'main.db'}"
    assert run_chronik("demo", "cart", "--store", url, cwd=tmp_path).returncode == 0  # events of today
    refused = run_chronik("demo", "bank", "--store", url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "in the future" in refused.stderr and "Traceback" not in refused.stderr
    fresh = run_chronik("demo", "bank", "--store", f"sqlite:///{tmp_path / 'fresh.db'}", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr


def test_on_a_memory_store_the_demo_suggests_no_command_that_cannot_find_it(tmp_path: Path) -> None:
    """Review finding: `--store memory://` ended with `chronik state ... --store memory://`, which a
    new process runs against a new, empty store."""
    done = run_chronik("demo", "bank", "--store", "memory://", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the books balance" in done.stdout
    assert "chronik state account-" not in done.stdout and "--store memory://" not in done.stdout
    assert "it is gone when the demo ends" in done.stdout
