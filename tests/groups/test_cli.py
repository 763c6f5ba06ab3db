"""The group commands, through typer's CliRunner and, for `worker`, a real process and a real SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from chronik import AppendRequest, NewEvent, open_store
from chronik.cli.groups import standalone_app
from chronik.groups import GroupConfig, GroupMember, group_status, list_parked
from tests.groups.handlers import fail_on_poison

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _seed(url: str, poison: bool = False) -> None:
    with open_store(url) as store:
        for version in range(3):
            store.append_many(
                AppendRequest(
                    f"in-{s}",
                    [NewEvent(type="Happened", data={"poison": poison and s == 1 and version == 1})],
                )
                for s in range(4)
            )


def test_status_parked_replay_and_discard(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    _seed(url, poison=True)
    with open_store(url) as store:
        GroupMember(
            store,
            GroupConfig(name="g", partitions=4, categories=("in",)),
            fail_on_poison,
            max_attempts=2,
            backoff=0,
        ).run(until_idle=True)
    app = standalone_app()

    result = runner.invoke(app, ["groups", "status", "g", "--store", url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(report["partitions"]) == 4
    assert sum(p["parked"] for p in report["partitions"]) == 2
    assert runner.invoke(app, ["groups", "status", "g", "--store", url]).exit_code == 0
    assert runner.invoke(app, ["groups", "status", "nope", "--store", url]).exit_code == 1
    every = runner.invoke(app, ["groups", "status", "--store", url, "--json"])
    assert [r["config"]["name"] for r in json.loads(every.output)] == ["g"]
    assert "group 'g'" in runner.invoke(app, ["groups", "status", "--store", url]).output

    result = runner.invoke(app, ["groups", "parked", "g", "--store", url, "--json"])
    parked = json.loads(result.output)
    assert [p["stream"] for p in parked] == ["in-1", "in-1"] and "poison at in-1@1" in parked[0]["error"]
    assert "poison" in runner.invoke(app, ["groups", "parked", "g", "--store", url]).output

    handler = "tests.groups.handlers:fail_on_poison"
    result = runner.invoke(app, ["groups", "replay-parked", "g", "--store", url, "--handler", handler])
    assert result.exit_code == 1 and "failed again" in result.output
    os.environ["FIXED"] = "1"
    try:
        result = runner.invoke(app, ["groups", "replay-parked", "g", "--store", url, "--handler", handler])
    finally:
        del os.environ["FIXED"]
    assert result.exit_code == 0 and "replayed 2" in result.output
    with open_store(url) as store:
        assert [e.data["version"] for e in store.read_stream("applied-1")] == [0, 1, 2]
        assert list_parked(store, "g") == []

    bad = runner.invoke(app, ["groups", "replay-parked", "g", "--store", url, "--handler", "nomodule"])
    assert bad.exit_code != 0
    missing = runner.invoke(app, ["groups", "discard-parked", "g", "99", "--store", url])
    assert missing.exit_code == 1  # not found, as everywhere; it was 0
    assert "discarded 0 of 1: no parked event 99 in group 'g'" in missing.output


def test_worker_process_drains_and_leaves_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    _seed(url)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "chronik.cli.groups", "worker", "g"),
            *("--handler", "tests.groups.handlers:apply", "--store", url, "--partitions", "4"),
            *("--category", "in", "--member-id", "w1", "--lease-ttl", "30"),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        with open_store(url) as store:
            while time.monotonic() < deadline:
                try:
                    status = group_status(store, "g")
                except Exception:  # the group is created by the worker
                    status = None
                if status is not None and status.total_lag == 0 and not status.unowned:
                    break
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr
            assert "member w1 left: handled 12" in stderr
            after = group_status(store, "g")
            assert after.members == () and set(after.unowned) == {0, 1, 2, 3}  # handed back at once
            assert {e.stream: e.data["version"] for e in store.read_all(categories=["applied"])} == {
                f"applied-{s}": 2 for s in range(4)
            }
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
