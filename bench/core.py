"""Core benchmark: chronik and the `eventsourcing` library, side by side, in one process run.

    python bench/core.py                        # SQLite, both durability settings, 3 repetitions
    python bench/core.py --backends sqlite,postgres --repeat 5

Each workload runs on a fresh database per repetition, for both libraries, with the same
durability setting (stated in the output): `full` fsyncs every commit, `normal` (SQLite only)
leaves the fsync to checkpoints. Both libraries are used the way an application uses them: an
aggregate records events and a repository saves it (one commit per save), reads the whole log
decoded into typed events, and hydrates an aggregate with and without a snapshot.

Prints a table of medians and ratios (>1: chronik is faster) and writes JSON to
`bench/results/core.json`. Needs the `bench` extra: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from chronik.domain import Aggregate, Repository, applies
from chronik.domain.snapshots import take_snapshot
from chronik.store import EventStore, open_store

APPEND_EVENTS = 20_000
BATCH = 100
HYDRATE_EVENTS = 10_000


# -- the same aggregate in both libraries ---------------------------------------------------------


class Deposited(msgspec.Struct, frozen=True):
    amount: int
    reference: str


class AccountState(msgspec.Struct):
    balance: int = 0
    deposits: int = 0


class Account(Aggregate[AccountState]):
    category = "account"

    def deposit(self, amount: int, reference: str) -> None:
        self.record(Deposited(amount, reference))

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.state.balance += event.amount
        self.state.deposits += 1


@functools.cache  # eventsourcing registers classes by import path ("topic"): define it once
def _eventsourcing_account_class() -> type:
    from eventsourcing.domain import Aggregate as EsAggregate
    from eventsourcing.domain import event

    class EsAccount(EsAggregate):  # type: ignore[misc]
        def __init__(self) -> None:
            self.balance = 0
            self.deposits = 0

        @event("Deposited")
        def deposit(self, amount: int, reference: str) -> None:
            self.balance += amount
            self.deposits += 1

    return EsAccount


# -- one library's side of the run ----------------------------------------------------------------


class ChronikSide:
    name = "chronik"

    def __init__(self, url: str) -> None:
        self.store: EventStore = open_store(url)
        self.repository = Repository(self.store)
        self.repository.codec.register(Deposited)

    def append(self, events: int, per_commit: int) -> str:
        account = Account(str(uuid.uuid4()))
        for start in range(0, events, per_commit):
            for i in range(start, start + per_commit):
                account.deposit(i, "ref")
            self.repository.save(account)
        return account.id

    def read_log(self) -> int:
        codec = self.repository.codec
        count = 0
        for recorded in self.store.iter_all(batch_size=1000):
            codec.decode(recorded)
            count += 1
        return count

    def hydrate(self, account_id: str) -> int:
        account = self.repository.load(Account, account_id, use_snapshots=False)
        return account.state.deposits

    def snapshot(self, account_id: str) -> None:
        take_snapshot(self.store, self.repository.load(Account, account_id, use_snapshots=False))

    def hydrate_from_snapshot(self, account_id: str) -> int:
        return self.repository.load(Account, account_id).state.deposits

    def close(self) -> None:
        self.store.close()


class EventsourcingSide:
    name = "eventsourcing"

    def __init__(self, env: dict[str, str]) -> None:
        from eventsourcing.application import Application

        self.account_class = _eventsourcing_account_class()
        self.app = Application(env={**env, "IS_SNAPSHOTTING_ENABLED": "y"})

    def append(self, events: int, per_commit: int) -> Any:
        account = self.account_class()
        for start in range(0, events, per_commit):
            for i in range(start, start + per_commit):
                account.deposit(i, "ref")
            self.app.save(account)
        return account.id

    def read_log(self) -> int:
        recorder, mapper = self.app.recorder, self.app.mapper
        count, start = 0, 1
        while True:
            page = recorder.select_notifications(start=start, limit=1000)
            if not page:
                return count
            for notification in page:
                mapper.to_domain_event(notification)
                count += 1
            start = page[-1].id + 1

    def hydrate(self, account_id: Any) -> int:
        deposits: int = self.app.repository.get(account_id).deposits  # no snapshot exists yet
        return deposits

    def snapshot(self, account_id: Any) -> None:
        self.app.take_snapshot(account_id)

    def hydrate_from_snapshot(self, account_id: Any) -> int:
        deposits: int = self.app.repository.get(account_id).deposits
        return deposits

    def close(self) -> None:
        self.app.close()


def _set_eventsourcing_sqlite_synchronous(mode: str) -> None:
    """eventsourcing opens its own SQLite connections; give them the same durability as chronik's."""
    from eventsourcing import sqlite as es_sqlite

    original = es_sqlite.SQLiteConnectionPool._create_connection
    if getattr(original, "_chronik_bench", None) == mode:
        return
    unwrapped = getattr(original, "__wrapped__", original)

    def create_connection(self: Any) -> Any:
        connection = unwrapped(self)
        connection._sqlite_conn.execute(f"PRAGMA synchronous = {mode.upper()}")
        return connection

    create_connection.__wrapped__ = unwrapped  # type: ignore[attr-defined]
    create_connection._chronik_bench = mode  # type: ignore[attr-defined]
    es_sqlite.SQLiteConnectionPool._create_connection = create_connection  # type: ignore[method-assign]


# -- workloads ------------------------------------------------------------------------------------


@dataclass
class Measurement:
    workload: str
    backend: str
    durability: str
    unit: str
    chronik: list[float] = field(default_factory=list)
    eventsourcing: list[float] = field(default_factory=list)

    def median(self, side: str) -> float:
        values: list[float] = getattr(self, side)
        return statistics.median(values)

    @property
    def ratio(self) -> float:
        """How many times better chronik is (rates: higher is better; times: lower is better)."""
        ours, theirs = self.median("chronik"), self.median("eventsourcing")
        return ours / theirs if self.unit == "events/s" else theirs / ours


def run_once(side: ChronikSide | EventsourcingSide, events: int) -> dict[str, float]:
    results: dict[str, float] = {}
    started = time.perf_counter()
    side.append(events, 1)
    results["append, 1 event per commit"] = events / (time.perf_counter() - started)
    started = time.perf_counter()
    side.append(events, BATCH)
    results[f"append, {BATCH} events per commit"] = events / (time.perf_counter() - started)
    started = time.perf_counter()
    count = side.read_log()
    results["read whole log, decoded"] = count / (time.perf_counter() - started)
    big = side.append(HYDRATE_EVENTS, BATCH)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        assert side.hydrate(big) == HYDRATE_EVENTS
        timings.append(time.perf_counter() - started)
    results[f"hydrate {HYDRATE_EVENTS:,} events, no snapshot"] = statistics.median(timings) * 1000
    side.snapshot(big)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert side.hydrate_from_snapshot(big) == HYDRATE_EVENTS
        timings.append(time.perf_counter() - started)
    results[f"hydrate {HYDRATE_EVENTS:,} events, from snapshot"] = statistics.median(timings) * 1000
    return results


def _sides(backend: str, durability: str, folder: Path, rep: int) -> list[Callable[[], Any]]:
    if backend == "sqlite":
        chronik_url = f"sqlite:///{folder / f'chronik-{durability}-{rep}.db'}?synchronous={durability}"
        es_env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(folder / f"es-{durability}-{rep}.db"),
        }

        def make_es() -> EventsourcingSide:
            _set_eventsourcing_sqlite_synchronous(durability)
            return EventsourcingSide(es_env)

        return [lambda: ChronikSide(chronik_url), make_es]
    base = os.environ.get("CHRONIK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"bench_{os.getpid()}_{rep}"
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    es_env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": f"{schema}_es",
    }
    _create_postgres_schema(base, f"{schema}_es")
    separator = "&" if "?" in base else "?"
    return [
        lambda: ChronikSide(f"{base}{separator}schema={schema}_chronik"),
        lambda: EventsourcingSide(es_env),
    ]


def _create_postgres_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.execute(f'CREATE SCHEMA "{schema}"')


def _drop_postgres_schemas(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"bench_{os.getpid()}_%",)
        ).fetchall()
        for (name,) in rows:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite, postgres")
    parser.add_argument("--durability", default="full,normal", help="for SQLite: full, normal, or both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=APPEND_EVENTS)
    parser.add_argument("--json", default="bench/results/core.json")
    args = parser.parse_args(argv)
    console = Console(width=150)
    measurements: dict[tuple[str, str, str], Measurement] = {}
    runs = []
    for backend in args.backends.split(","):
        for durability in args.durability.split(",") if backend == "sqlite" else ["full"]:
            runs.append((backend, durability))
    with tempfile.TemporaryDirectory(prefix="chronik-bench-") as tmp:
        for backend, durability in runs:
            for rep in range(args.repeat):
                for make in _sides(backend, durability, Path(tmp), rep):
                    side = make()
                    console.print(
                        f"[dim]{backend}/{durability} rep {rep + 1}/{args.repeat}: {side.name}[/dim]"
                    )
                    try:
                        results = run_once(side, args.events)
                    finally:
                        side.close()
                    for workload, value in results.items():
                        unit = "ms" if workload.startswith("hydrate") else "events/s"
                        key = (workload, backend, durability)
                        measurement = measurements.setdefault(
                            key, Measurement(workload, backend, durability, unit)
                        )
                        getattr(measurement, side.name).append(value)
            if backend == "postgres":
                _drop_postgres_schemas(
                    os.environ.get("CHRONIK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
                )

    table = Table(
        title=f"chronik vs eventsourcing 9.5.6 — medians of {args.repeat} runs, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for column in ("workload", "backend", "durability", "chronik", "eventsourcing", "unit", "ratio"):
        table.add_column(
            column, justify="right" if column in ("chronik", "eventsourcing", "ratio") else "left"
        )
    for m in measurements.values():
        table.add_row(
            m.workload,
            m.backend,
            m.durability,
            f"{m.median('chronik'):,.1f}",
            f"{m.median('eventsourcing'):,.1f}",
            m.unit,
            f"{m.ratio:.2f}x",
        )
    console.print(table)
    console.print("ratio > 1: chronik is better (more events/s, or fewer ms).")
    output = Path(args.json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "machine": {
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "repeat": args.repeat,
                "events": args.events,
                "results": [
                    {
                        "workload": m.workload,
                        "backend": m.backend,
                        "durability": m.durability,
                        "unit": m.unit,
                        "chronik": m.chronik,
                        "eventsourcing": m.eventsourcing,
                        "chronik_median": m.median("chronik"),
                        "eventsourcing_median": m.median("eventsourcing"),
                        "ratio": m.ratio,
                    }
                    for m in measurements.values()
                ],
            },
            indent=2,
        )
    )
    console.print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
