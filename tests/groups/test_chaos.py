"""Chaos: real worker processes, real SIGKILL and SIGSTOP/SIGCONT, and a check of every effect.

Three `chronik worker` processes drain 10,000 events of 500 streams over 16 partitions while a
producer keeps appending. One is SIGKILLed mid-way; another is SIGSTOPped for longer than its
lease and then SIGCONTed (a zombie that wakes up believing it still owns its partitions). At the
end every input event has exactly one Applied effect, in stream order, the zombie's late commits
were refused (its log says so), and every partition is owned by a live member.

Backends come from `chaos_urls()`: SQLite always; PostgreSQL joins when its coordinator exists
and CHRONIK_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from chronik import AppendRequest, NewEvent, open_store
from chronik.groups import coordinator_for
from chronik.store import EventStore
from tests.postgres_support import drop_schemas, new_schema_name, store_url

ROOT = Path(__file__).resolve().parents[2]
STREAMS = 500
PER_STREAM = 20
PARTITIONS = 16
LEASE_TTL = 3.0  # generous: a loaded 2-core machine must not fence healthy members by accident
DEADLINE = 50.0


def chaos_urls() -> list[object]:
    params: list[object] = [pytest.param(lambda tmp: f"sqlite:///{tmp / 'chaos.db'}", id="sqlite")]
    postgres_url = os.environ.get("CHRONIK_TEST_POSTGRES_URL")
    if postgres_url and importlib.util.find_spec("chronik.groups.postgres") is not None:
        # A fresh schema per run (the test drops it): the workers get it through the URL.
        params.append(
            pytest.param(
                lambda tmp: store_url(postgres_url, new_schema_name()),
                id="postgres",
                marks=pytest.mark.postgres,
            )
        )
    return params


class Worker:
    def __init__(self, url: str, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[str] = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "chronik.cli.groups", "worker", "chaos"),
                *("--handler", "tests.groups.handlers:apply", "--store", url),
                *("--partitions", str(PARTITIONS), "--category", "in", "--member-id", name),
                *("--lease-ttl", str(LEASE_TTL), "--batch-size", "100"),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def finish(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def stop_outside_write_lock(url: str, worker: Worker) -> None:
    """SIGSTOP the worker at a moment it does not hold SQLite's write lock.

    A process stopped inside its transaction stalls every writer (SQLite has one write lock), so
    nobody could take its partitions and its commit would, correctly, still be accepted later:
    that is the database fencing by itself, not the case under test. So stop, look, and if the
    lock is held, let it run a moment and try again.
    """
    if not url.startswith("sqlite:"):
        worker.signal(signal.SIGSTOP)  # a server database fences a stopped lock holder by row locks
        return
    path = url.removeprefix("sqlite:///")
    for _ in range(500):
        worker.signal(signal.SIGSTOP)
        probe = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            worker.signal(signal.SIGCONT)
            time.sleep(0.003)
        finally:
            probe.close()
    raise AssertionError("could not stop the worker outside its write lock")


def append_rounds(store: EventStore, rounds: range) -> None:
    for version in rounds:
        store.append_many(
            AppendRequest(f"in-{s}", [NewEvent(type="Happened", data={"v": version})]) for s in range(STREAMS)
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.chaos
@pytest.mark.timeout(120)
@pytest.mark.parametrize("make_url", chaos_urls())
def test_kill_and_zombie_keep_effects_exactly_once(make_url: Callable[[Path], str], tmp_path: Path) -> None:
    url = make_url(tmp_path)
    store = open_store(url)
    workers = [Worker(url, f"w{i}", tmp_path) for i in range(3)]
    killed, zombie, steady = workers
    started = time.monotonic()
    try:
        append_rounds(store, range(0, 4))

        def all_own_partitions() -> bool:
            owners = {row.owner for row in coordinator_for(store).partition_rows("chaos")}
            return owners == {"w0", "w1", "w2"}

        wait_until(lambda: _applied_count(store) > 0, 30, "the workers to start")
        wait_until(all_own_partitions, 30, "the three workers to share the partitions")
        append_rounds(store, range(4, 6))

        def applied_by(pid: int) -> bool:
            return any(e.data["pid"] == pid for e in store.read_all(categories=["applied"]))

        wait_until(lambda: applied_by(killed.process.pid), 30, "the victim to commit some work")
        killed.signal(signal.SIGKILL)  # mid-way, possibly inside a transaction
        killed.process.wait(10)
        append_rounds(store, range(6, 8))

        # The zombie: stopped (outside the write lock) while the others keep working, kept stopped
        # well past its lease so they take its partitions, then woken up: it carries on with its
        # old view, and its commit must be refused.
        rejected = 0
        next_round = 8
        for _ in range(3):
            stop_outside_write_lock(url, zombie)
            stopped_at = time.monotonic()
            append_rounds(store, range(next_round, next_round + 2))
            next_round += 2
            time.sleep(max(0.0, stopped_at + LEASE_TTL * 2.5 - time.monotonic()))
            zombie.signal(signal.SIGCONT)
            try:
                wait_until(lambda: "commit rejected" in zombie.log(), 5, "the zombie's late commit")
            except AssertionError:
                continue  # it was stopped in its heartbeat's lock wait: it learned of the loss there
            rejected = zombie.log().count("commit rejected")
            break
        append_rounds(store, range(next_round, PER_STREAM))

        coordinator = coordinator_for(store)
        head = store.head_position()
        wait_until(
            lambda: all(row.checkpoint >= head for row in coordinator.partition_rows("chaos")),
            DEADLINE,
            "the group to drain",
        )

        def settled() -> bool:
            owners = Counter(row.owner for row in coordinator.partition_rows("chaos"))
            return set(owners) == {"w1", "w2"} and abs(owners["w1"] - owners["w2"]) <= 1

        wait_until(settled, 4 * LEASE_TTL, "the two survivors to share all partitions")
    finally:
        for worker in workers:
            worker.finish()
    elapsed = time.monotonic() - started

    # Every input event's effect exactly once, in stream order, from the outputs themselves.
    applied: dict[str, list[int]] = defaultdict(list)
    for event in store.read_all(categories=["applied"]):
        applied[event.stream].append(event.data["version"])
    assert len(applied) == STREAMS
    wrong = {stream: versions for stream, versions in applied.items() if versions != list(range(PER_STREAM))}
    assert not wrong, f"{len(wrong)} streams with missing, repeated or reordered effects"
    assert sum(len(v) for v in applied.values()) == STREAMS * PER_STREAM

    assert rejected >= 1, zombie.log()[-3000:]
    assert any(e.data["pid"] == killed.process.pid for e in store.read_all(categories=["applied"]))
    assert "handled" in steady.log()
    assert coordinator_for(store).list_parked("chaos") == []
    store.close()
    if url.startswith("postgresql:"):
        drop_schemas(os.environ["CHRONIK_TEST_POSTGRES_URL"], [url.rsplit("schema=", 1)[1]])
    print(f"chaos run: {elapsed:.1f}s, zombie commits rejected: {rejected}")


def _applied_count(store: EventStore) -> int:
    return len(store.read_all(categories=["applied"], limit=1))
