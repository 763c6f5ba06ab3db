"""Benchmark: projection rebuild and catch-up rates, `verify` / `seal` rates, and what the hash
chain costs an append; on SQLite, and with `--postgres URL` also on PostgreSQL.

    .venv/bin/python bench/projections.py [--events 100000] [--streams 1000] [--batch-size 1000]
    .venv/bin/python bench/projections.py --postgres postgresql://postgres@127.0.0.1:5432/test

Prints a table and writes bench/results/projections.json. Not a test: run it on a quiet machine.
The log is written with synchronous=normal to set up quickly; the rebuild, catch-up, verify and
seal phases then run on a store opened with the default (synchronous=full), as production would.
The two append phases use synchronous=normal, so that an fsync per commit does not hide what an
inline projection adds to each append.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from chronik import NewEvent
from chronik.audit import seal, verify
from chronik.events.envelope import RecordedEvent
from chronik.projections import Projection, ProjectionTx, catch_up, handles, rebuild
from chronik.store import open_store

RESULTS = Path(__file__).parent / "results" / "projections.json"


class StreamTotals(Projection):
    """A simple projection: events and total amount per stream (one upsert per event)."""

    name = "bench_stream_totals"
    tables = ("totals",)
    schema = (
        "CREATE TABLE {totals} (stream TEXT PRIMARY KEY, events INTEGER NOT NULL, amount INTEGER NOT NULL)",
    )

    @handles("Deposited")
    def deposited(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        tx.execute(
            "INSERT INTO {totals} VALUES (?, 1, ?) ON CONFLICT (stream) "
            "DO UPDATE SET events = {totals}.events + 1, amount = {totals}.amount + excluded.amount",
            (event.stream, event.data["amount"]),
        )


def fill(path: Path, events: int, streams: int) -> None:
    store = open_store(f"sqlite:///{path}?synchronous=normal")
    per_append = 100
    for index in range(events // per_append):
        store.append(
            f"acct-{index % streams}",
            [NewEvent(type="Deposited", data={"amount": n, "memo": "benchmark"}) for n in range(per_append)],
        )
    store.close()


def timed(label: str, events: int, action: Any, rows: list[dict[str, Any]]) -> None:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    rows.append(
        {
            "phase": label,
            "events": events,
            "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds),
        }
    )
    print(f"{label:<50} {events:>9,} {seconds:>9.2f} s {events / seconds:>12,.0f} ev/s", flush=True)


def measure_chain_cost(
    backend: ModuleType,
    store_url: Callable[[str], str],
    events: int,
    rows: list[dict[str, Any]],
    label: str = "",
) -> None:
    """What the tamper-evidence chain costs an append: the same appends with the hash computed and
    with a constant in its place (the column is still written), alternating, medians of three.

    `backend` is the store module whose `event_hash` is swapped (`chronik.store.sqlite` or
    `chronik.store.postgres`); `store_url(name)` gives a fresh, empty store's URL for each run.
    """
    import statistics

    real_hash: Callable[..., str] = getattr(backend, "event_hash")  # noqa: B009

    def no_hash(*_: object) -> str:
        return "0" * 64

    # The hash's own time per event, timed alone: under a noisy neighbour the A/B difference
    # below swings by more than the whole effect, while this share does not.
    sample = ("0" * 64, "0190c1d2-7e3a-7b3c-8d4e-5f6a7b8c9d0e", "acct-1", 5, "Deposited", 1)
    times = ("2026-11-27T02:00:00.000000Z", "2026-11-27T02:00:00.000000Z", "{}", '{"amount":5}')
    calls = 100_000
    started = time.perf_counter()
    for _ in range(calls):
        real_hash(*sample, *times)
    hash_seconds = (time.perf_counter() - started) / calls

    for per_append in (1, 100):
        rates: dict[bool, list[float]] = {True: [], False: []}
        for repetition in range(3):
            for chained in (True, False):
                setattr(backend, "event_hash", real_hash if chained else no_hash)  # noqa: B010
                store = open_store(store_url(f"chain_{per_append}_{int(chained)}_{repetition}"))
                started = time.perf_counter()
                for index in range(events // per_append):
                    store.append(
                        f"acct-{index % 100}",
                        [NewEvent(type="Deposited", data={"amount": n}) for n in range(per_append)],
                    )
                rates[chained].append(events / (time.perf_counter() - started))
                store.close()
        setattr(backend, "event_hash", real_hash)  # noqa: B010
        with_chain, without = statistics.median(rates[True]), statistics.median(rates[False])
        cost = (without - with_chain) / without * 100
        share = hash_seconds * with_chain * 100  # the hash's share of an append's time per event
        phase = f"{label}hash chain cost, {per_append} event(s) per append"
        rows.append(
            {
                "phase": phase,
                "events": events,
                "events_per_s_with_chain": round(with_chain),
                "events_per_s_without_chain": round(without),
                "cost_percent": round(cost, 1),
                "hash_microseconds": round(hash_seconds * 1e6, 2),
                "hash_share_percent": round(share, 1),
            }
        )
        print(
            f"{phase:<50} {with_chain:>12,.0f} vs {without:>12,.0f} ev/s without: {cost:+.1f}%; "
            f"the hash ({hash_seconds * 1e6:.2f} us) is {share:.1f}% of the time",
            flush=True,
        )


def run_postgres(base_url: str, events: int, streams: int, batch_size: int) -> list[dict[str, Any]]:
    """The rebuild, catch-up and verify phases on PostgreSQL, in a schema of their own."""
    import os

    import psycopg

    schema = f"bench_projections_{os.getpid()}"
    separator = "&" if "?" in base_url else "?"
    store = open_store(f"{base_url}{separator}schema={schema}")
    rows: list[dict[str, Any]] = []
    try:
        for index in range(events // 100):
            store.append(
                f"acct-{index % streams}",
                [NewEvent(type="Deposited", data={"amount": n, "memo": "benchmark"}) for n in range(100)],
            )
        print(f"PostgreSQL ({schema})")
        projection = StreamTotals(store)
        timed(
            "postgres: async catch-up (runner batches of 500)",
            events,
            lambda: catch_up(projection, 500),
            rows,
        )
        timed(
            f"postgres: rebuild, blue/green (batches of {batch_size})",
            events,
            lambda: rebuild(projection, batch_size=batch_size),
            rows,
        )
        timed("postgres: verify, first run (+ seals everything)", events, lambda: verify(store), rows)
        timed("postgres: verify, all sealed", events, lambda: verify(store), rows)
        assert projection.query("SELECT sum(events) FROM {totals}")[0][0] == events
        import chronik.store.postgres as postgres_backend

        measure_chain_cost(
            postgres_backend,
            lambda name: f"{base_url}{separator}schema={schema}_{name}",
            events // 20,
            rows,
            label="postgres: ",
        )
    finally:
        store.close()
        with psycopg.connect(base_url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for per_append in (1, 100):
                for chained in (0, 1):
                    for repetition in range(3):
                        name = f"{schema}_chain_{per_append}_{chained}_{repetition}"
                        connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure on PostgreSQL (e.g. postgresql://postgres@127.0.0.1:5432/test; a fresh schema)",
    )
    args = parser.parse_args()
    rows_postgres: list[dict[str, Any]] = []
    if args.postgres:
        rows_postgres = run_postgres(args.postgres, args.events, args.streams, args.batch_size)

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.db"
        fill(path, args.events, args.streams)
        events = sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0]
        store = open_store(f"sqlite:///{path}")
        rows: list[dict[str, Any]] = []
        print(f"{'phase':<50} {'events':>9} {'time':>11} {'rate':>17}")
        projection = StreamTotals(store)
        timed("async catch-up (runner batches of 500)", events, lambda: catch_up(projection, 500), rows)
        timed(
            f"rebuild, blue/green (batches of {args.batch_size})",
            events,
            lambda: rebuild(projection, batch_size=args.batch_size),
            rows,
        )
        timed("verify, first run (+ seals everything)", events, lambda: verify(store), rows)
        timed("verify, all sealed", events, lambda: verify(store), rows)
        store.append("acct-0", [NewEvent(type="Deposited", data={"amount": 1})])
        with sqlite3.connect(path) as raw:
            raw.execute("DELETE FROM seals")
        timed("seal (checks chains, then seals)", events + 1, lambda: seal(store), rows)
        assert projection.query("SELECT sum(events) FROM {totals}")[0][0] == events
        store.close()
        appends = args.events // 20
        for inline in (False, True):
            url = f"sqlite:///{Path(directory) / f'appends-{inline}.db'}?synchronous=normal"
            small = open_store(url)
            if inline:
                StreamTotals(small).attach_inline()
            label = f"appends, 1 event each, {'with an inline' if inline else 'no'} projection"
            timed(
                label,
                appends,
                lambda small=small: [
                    small.append(f"acct-{n % 100}", [NewEvent(type="Deposited", data={"amount": n})])
                    for n in range(appends)
                ],
                rows,
            )
            small.close()

        import chronik.store.sqlite as sqlite_backend

        measure_chain_cost(
            sqlite_backend,
            lambda name: f"sqlite:///{Path(directory) / name}.db?synchronous=normal",
            args.events // 5,
            rows,
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "projections",
                "events": args.events,
                "streams": args.streams,
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "machine": platform.machine(),
                "results": rows,
                "postgres_results": rows_postgres,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
