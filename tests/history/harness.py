"""Run a history: start the clients, inject faults while they run, read everything back, check it.

`run_history(backend, workdir)` is the whole thing; it returns a `Report` (see `checker.py`) and
the summary line. Every wait has a timeout and every child process is killed in a `finally`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from chronik import StoreUnavailable, StreamNotFound
from chronik.store import EventStore
from tests.history.checker import Report, check
from tests.history.clients import open_until
from tests.history.faults import Backend
from tests.history.journal import Attempt, Observations, Seen, attempts_from, load_journal, seen_from

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SECONDS = 45.0  # per test; the three tests take about 2.5 minutes in all
WRITERS = 4
READERS = 2
QUIET_END = 2.0  # no faults in the last seconds, so every writer ends on a live system
SETTLE_SECONDS = 1.0  # the head must stay still this long after the writers exit
READER_DRAIN_TIMEOUT = 90.0


def history_seconds() -> float:
    """How long the clients run: `CHRONIK_HISTORY_SECONDS`, else the CI default."""
    return float(os.environ.get("CHRONIK_HISTORY_SECONDS") or DEFAULT_SECONDS)


@dataclass
class Client:
    """One client process: its current incarnation and every journal it wrote."""

    name: str
    role: str
    workdir: Path
    journals: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    killed: int = 0
    errors: list[str] = field(default_factory=list)

    def start(self, config: dict[str, object]) -> None:
        incarnation = len(self.journals)
        journal = self.workdir / f"{self.name}.{incarnation}.jsonl"
        config = {**config, "name": f"{self.name}.{incarnation}", "journal": str(journal)}
        if self.journals:
            config["resume"] = str(self.journals[-1])
        self.journals.append(journal)
        stderr = (self.workdir / f"{self.name}.{incarnation}.stderr").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.history.clients", self.role, json.dumps(config)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )
        stderr.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signum)

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)
            self.killed += 1

    def note_exit(self) -> None:
        """Record an exit we did not cause (a nonzero code, or a signal we did not send)."""
        assert self.process is not None
        code = self.process.returncode
        if code not in (0, -signal.SIGKILL) or (code == -signal.SIGKILL and not self.killed):
            log = self.workdir / f"{self.name}.{len(self.journals) - 1}.stderr"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            self.errors.append(f"{self.name} exited with {code}: {tail}")


class Cluster:
    """The client processes of one run, as the faults see them."""

    def __init__(self, backend: Backend, workdir: Path, until: float, seed: int) -> None:
        self.backend = backend
        self.workdir = workdir
        self.until = until
        self.seed = seed
        self.drain = workdir / "drain.json"
        self.writers = [Client(f"w{i}", "writer", workdir) for i in range(WRITERS)]
        self.readers = [Client(f"r{i}", "reader", workdir) for i in range(READERS)]
        self._starts = 0

    def start_writer(self, client: Client) -> None:
        self._starts += 1
        client.start({"url": self.backend.url, "until": self.until, "seed": self.seed * 1000 + self._starts})

    def start(self) -> None:
        for reader in self.readers:
            reader.start({"url": self.backend.url, "drain": str(self.drain), "deadline": self.until + 180})
        for writer in self.writers:
            self.start_writer(writer)

    def random_live_writer(self, rng: random.Random) -> Client | None:
        live = [writer for writer in self.writers if writer.alive()]
        return rng.choice(live) if live else None

    def restart_killed_writers(self) -> None:
        if time.time() > self.until - 1:
            return
        for writer in self.writers:
            if writer.process is not None and not writer.alive():
                if writer.process.returncode != -signal.SIGKILL:
                    writer.note_exit()
                self.start_writer(writer)

    def wait_writers(self) -> None:
        for writer in self.writers:
            assert writer.process is not None
            try:
                writer.process.wait(timeout=max(1.0, self.until - time.time()) + 60)
            except subprocess.TimeoutExpired:
                writer.errors.append(f"{writer.name} did not stop by its deadline")
                writer.kill()
            else:
                writer.note_exit()

    def drain_readers(self, position: int | None) -> None:
        """Tell the readers where the log ends; wait for them to get there."""
        temporary = self.drain.with_suffix(".tmp")
        temporary.write_text(json.dumps({"position": position}))
        temporary.rename(self.drain)  # readers see the whole file or none
        deadline = time.time() + READER_DRAIN_TIMEOUT
        for reader in self.readers:
            assert reader.process is not None
            try:
                reader.process.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                reader.errors.append(f"{reader.name} did not reach position {position} in time")
            else:
                reader.note_exit()

    def kill_all(self) -> None:
        for client in (*self.writers, *self.readers):
            if client.alive():
                assert client.process is not None
                client.process.kill()
                client.process.wait(timeout=10)


def run_history(
    backend: Backend, workdir: Path, *, seconds: float | None = None, seed: int | None = None
) -> tuple[Report, str]:
    """Run the workload against `backend` with its faults; return the report and its summary line."""
    seconds = history_seconds() if seconds is None else seconds
    seed = random.randrange(1_000_000) if seed is None else seed
    rng = random.Random(seed)
    started = time.time()
    cluster = Cluster(backend, workdir, started + seconds, seed)
    faults: Counter[str] = Counter()
    try:
        cluster.start()
        _nemesis(backend, cluster, rng, faults)
        cluster.wait_writers()
        observations = _read_back(backend.url, cluster)
        final_position = observations.read_all[-1].position if observations.read_all else None
        cluster.drain_readers(final_position)
    finally:
        cluster.kill_all()
    observations.readers = {
        reader.name: [seen for journal in reader.journals for seen in seen_from(load_journal(journal))]
        for reader in cluster.readers
    }
    attempts: list[Attempt] = [
        attempt
        for writer in cluster.writers
        for journal in writer.journals
        for attempt in attempts_from(load_journal(journal))
    ]
    report = check(attempts, observations)
    errors = [error for client in (*cluster.writers, *cluster.readers) for error in client.errors]
    report.process_errors = errors
    report.faults = faults
    shown_faults = ",".join(f"{name}:{count}" for name, count in sorted(faults.items()))
    summary = report.summary(
        backend=backend.name,
        seed=seed,
        seconds=round(time.time() - started),
        writers=WRITERS,
        readers=READERS,
        faults=f"{sum(faults.values())}({shown_faults})",
    )
    return report, summary


def _nemesis(backend: Backend, cluster: Cluster, rng: random.Random, faults: Counter[str]) -> None:
    """Inject a random fault every 0.3-1.5 s until shortly before the end; restart killed writers."""
    weights = list(backend.weights) if backend.weights is not None else [1.0] * len(backend.faults)
    first_round = rng.sample(list(backend.faults), len(backend.faults))  # every fault at least once
    quiet = cluster.until - QUIET_END
    while time.time() < quiet:
        time.sleep(min(rng.uniform(0.3, 1.5), max(0.0, quiet - time.time())))
        cluster.restart_killed_writers()
        if time.time() >= quiet or not backend.faults:
            break
        fault = first_round.pop() if first_round else rng.choices(list(backend.faults), weights)[0]
        if fault.inject(cluster, rng):
            faults[fault.name] += 1
        elif not faults[fault.name]:
            first_round.append(fault)  # it never applied yet: try it again next time
    cluster.restart_killed_writers()


def _read_back(url: str, cluster: Cluster) -> Observations:
    """Once the writers are gone and the head is still: the whole log from a fresh store object."""
    store = open_until(url, time.time() + 60)
    try:
        _settle(store)
        read_all: list[Seen] = []
        position = 0
        while True:
            page = store.read_all(position, limit=1000)
            if not page:
                break
            read_all.extend(
                Seen(e.global_position, e.stream, e.stream_version, str(e.event_id)) for e in page
            )
            position = page[-1].global_position + 1
        names = {event.stream for event in read_all}
        for writer in cluster.writers:
            for journal in writer.journals:
                for attempt in attempts_from(load_journal(journal)):
                    names.update(part.stream for part in attempt.parts)
        streams = {name: _read_stream(store, name) for name in sorted(names)}
        versions = {name: store.stream_version(name) for name in sorted(names)}
        return Observations(read_all, streams, versions)
    finally:
        store.close()


def _settle(store: EventStore) -> None:
    """Wait (at most 30 s) until the readable head has not moved for `SETTLE_SECONDS`."""
    deadline = time.time() + 30
    head, since = -1, time.time()
    while time.time() < deadline:
        try:
            now = store.head_position()
        except StoreUnavailable:
            time.sleep(0.2)
            continue
        if now != head:
            head, since = now, time.time()
        elif time.time() - since >= SETTLE_SECONDS:
            return
        time.sleep(0.1)


def _read_stream(store: EventStore, name: str) -> list[Seen]:
    try:
        events = store.read_stream(name)
    except StreamNotFound:
        return []
    return [Seen(e.global_position, e.stream, e.stream_version, str(e.event_id)) for e in events]
