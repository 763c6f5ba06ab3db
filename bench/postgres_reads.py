"""PostgreSQL log reads: the paging read, a bounded filtered read, and the raw driver floor.

Why this exists: `read_all` bounds its inner index scan by `to_position` only where the scan
could walk past the bound (a read without a limit, or a filtered read), so an unfiltered page
keeps its prepared statement. This measures both sides of that choice on one log, beside plain
psycopg reading the same rows in the same pages:

* whole log, paged: `iter_all(batch_size=1000)` (catch-up, tailing, the decoded read of
  bench/core.py), against psycopg keyset pages of 1,000 rows of the same columns;
* a scratch rebuild's early page: `read_all(1, to_position=<1% into the log>, event_types=[a type
  found only there], limit=1000)`, which must not walk the other 99% of the log.

    .venv/bin/python bench/postgres_reads.py [--url postgresql://...] [--events 100000]

Prints a table and writes bench/results/postgres_reads.json. Uses a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import psycopg
from psycopg import sql

from chronik import NewEvent, open_store

RESULTS = Path(__file__).parent / "results" / "postgres_reads.json"
COLUMNS = (
    "event_id, stream_name, stream_version, global_position, event_type, "
    "data::text, metadata::text, schema_version, recorded_at, occurred_at"
)


def seed(url: str, events: int) -> int:
    """`events` events in batches of 1,000; the first 1% are of type Rare. Returns the last Rare position."""
    store = open_store(url)
    rare_until = 0
    try:
        for batch in range(events // 1000):
            kind = "Rare" if batch * 1000 < events // 100 else "Common"
            result = store.append(
                f"acct-{batch % 50}",
                [NewEvent(type=kind, data={"amount": n, "note": "x" * 40}) for n in range(1000)],
            )
            if kind == "Rare":
                rare_until = result.global_positions[-1]
    finally:
        store.close()
    return rare_until


def best_of(runs: int, work: object) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("CHRONIK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args()
    schema = f"chronik_bench_reads_{os.getpid()}"
    url = f"{args.url}{'&' if '?' in args.url else '?'}schema={schema}"
    try:
        rare_until = seed(url, args.events)
        store = open_store(url)
        try:
            store.read_all(0, limit=1)  # the pool's connections are prepared

            def chronik_paged() -> None:
                assert sum(1 for _ in store.iter_all(batch_size=1000)) == args.events

            def chronik_early() -> None:
                page = store.read_all(1, to_position=rare_until, event_types=["Rare"], limit=1000)
                assert len(page) == 1000

            paged = best_of(args.repeat, chronik_paged)
            early = best_of(args.repeat * 10, chronik_early)
        finally:
            store.close()
        with psycopg.connect(args.url, autocommit=True) as connection:
            connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

            def raw_paged() -> None:
                position, count = -1, 0
                while True:
                    rows = connection.execute(
                        f"SELECT {COLUMNS} FROM events WHERE global_position > %s "
                        "ORDER BY global_position LIMIT 1000",
                        (position,),
                        prepare=True,
                    ).fetchall()
                    if not rows:
                        break
                    count += len(rows)
                    position = rows[-1][3]
                assert count == args.events

            raw = best_of(args.repeat, raw_paged)
    finally:
        with psycopg.connect(args.url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "events": args.events,
        "paged_read_events_per_second": {
            "chronik": args.events / statistics.median(paged),
            "raw_psycopg": args.events / statistics.median(raw),
        },
        "early_filtered_page_ms": statistics.median(early) * 1000,
    }
    chronik_rate = result["paged_read_events_per_second"]["chronik"]  # type: ignore[index]
    raw_rate = result["paged_read_events_per_second"]["raw_psycopg"]  # type: ignore[index]
    print(f"PostgreSQL reads on {args.events:,} events, medians of {args.repeat} ({result['machine']})")
    print(f"  whole log, pages of 1,000, decoded: chronik {chronik_rate:,.0f} ev/s")
    print(f"  whole log, pages of 1,000, raw psycopg tuples: {raw_rate:,.0f} ev/s")
    print(f"  chronik / raw floor: {chronik_rate / raw_rate:.2f}x")
    print(
        f"  early bounded page of a rare type (a scratch rebuild): {result['early_filtered_page_ms']:.2f} ms"
    )
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
