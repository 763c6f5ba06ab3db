"""Benchmark: projection rebuild and catch-up rates, and `verify` / `seal` rates, on SQLite.

    .venv/bin/python bench/projections.py [--events 100000] [--streams 1000] [--batch-size 1000]

Prints a table and writes bench/results/projections.json. Not a test: run it on a quiet machine.
The log is written with synchronous=normal to set up quickly; every measured phase then runs on
a store opened with the default (synchronous=full), as production would.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from pathlib import Path
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
            "DO UPDATE SET events = events + 1, amount = amount + excluded.amount",
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
    print(f"{label:<38} {events:>9,} {seconds:>9.2f} s {events / seconds:>12,.0f} ev/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.db"
        fill(path, args.events, args.streams)
        events = sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0]
        store = open_store(f"sqlite:///{path}")
        rows: list[dict[str, Any]] = []
        print(f"{'phase':<38} {'events':>9} {'time':>11} {'rate':>17}")
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
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
