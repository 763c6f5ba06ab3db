"""Concurrent writers on PostgreSQL: chronik against the `eventsourcing` library's recorder.

Why this exists: chronik promises gap-free tailing *without* putting every writer behind one lock.
`eventsourcing` (9.5.6, `PostgresApplicationRecorder`, default settings) gets gap-free reading by
locking the whole events table in every append transaction. This script measures what each
approach costs: events per second with 1, 4 and 8 writer processes, each appending one event per
commit to random streams of its own, while a tailing reader in this process checks that it sees
every committed event exactly once (skipped / duplicated). Then chronik's commit-to-delivery
latency through `wait_for_events` (LISTEN/NOTIFY).

    .venv/bin/python bench/postgres_writers.py [--url postgresql://postgres@127.0.0.1:5432/test] [--seconds 5]

Prints a table and writes bench/results/postgres_writers.json. Each system and run gets its own
schema, dropped afterwards. It is a script, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from chronik import NewEvent, open_store
from chronik.store import EventStore

STREAMS_PER_WRITER = 100
RESULTS = Path(__file__).parent / "results" / "postgres_writers.json"


@dataclass
class Run:
    system: str
    writers: int
    seconds: float
    events: int
    events_per_second: float
    skipped: int
    duplicated: int


# -- chronik ----------------------------------------------------------------------------------


def chronik_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


def chronik_writer(url: str, index: int, seconds: float, start: Any, results: Any) -> None:
    store = open_store(url)
    rng = random.Random(index)
    committed: list[tuple[str, int]] = []
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event_id = uuid.uuid4()
        result = store.append(
            f"acct-{index}x{rng.randrange(STREAMS_PER_WRITER)}",
            NewEvent(type="Moved", data={"amount": 1}, event_id=event_id),
        )
        committed.append((str(event_id), result.global_positions[0]))
    store.close()
    results.put(committed)


def chronik_tail(store: EventStore, stop: threading.Event, seen: list[tuple[str, int]]) -> None:
    last = 0
    while True:
        page = store.read_all(last + 1, limit=2000)
        if page:
            seen.extend((str(e.event_id), e.global_position) for e in page)
            last = page[-1].global_position
        elif stop.is_set():
            return
        else:
            time.sleep(0.01)  # the same pause as the eventsourcing reader: this run measures writers


# -- eventsourcing ------------------------------------------------------------------------------


def es_recorder(base: str, schema: str, *, create: bool = False) -> Any:
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    parts = urlsplit(base)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        schema=schema,
    )
    recorder = PostgresApplicationRecorder(datastore)
    if create:  # once, before the writers start: concurrent CREATEs of its objects collide
        recorder.create_table()
    return recorder


def es_writer(base: str, schema: str, index: int, seconds: float, start: Any, results: Any) -> None:
    from eventsourcing.persistence import StoredEvent

    recorder = es_recorder(base, schema)
    rng = random.Random(index)
    streams = [uuid.uuid4() for _ in range(STREAMS_PER_WRITER)]
    versions = dict.fromkeys(streams, 0)
    committed: list[tuple[str, int]] = []
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stream = streams[rng.randrange(STREAMS_PER_WRITER)]
        version = versions[stream] = versions[stream] + 1
        ids = recorder.insert_events(
            [
                StoredEvent(
                    originator_id=stream, originator_version=version, topic="Moved", state=b'{"amount":1}'
                )
            ]
        )
        committed.append((f"{stream}:{version}", ids[0]))
    recorder.datastore.close()
    results.put(committed)


def es_tail(recorder: Any, stop: threading.Event, seen: list[tuple[str, int]]) -> None:
    last = 0
    while True:
        page = recorder.select_notifications(start=last + 1, limit=2000)
        if page:
            seen.extend((f"{n.originator_id}:{n.originator_version}", n.id) for n in page)
            last = page[-1].id
        elif stop.is_set():
            return
        else:
            time.sleep(0.01)


# -- running ------------------------------------------------------------------------------------


def create_schema(base: str, schema: str) -> None:
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def drop_schema(base: str, schema: str) -> None:
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def run(system: str, base: str, writers: int, seconds: float, *, with_reader: bool = True) -> Run:
    """One timed run; without a reader, `skipped` and `duplicated` are -1 (not measured)."""
    schema = f"bench_{system}_{os.getpid()}_{writers}"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(writers + 1)
    results = context.Queue()
    stop = threading.Event()
    seen: list[tuple[str, int]] = []
    tail: Callable[[], None]
    if system == "chronik":
        url = chronik_url(base, schema)
        reader: Any = open_store(url)  # creates the schema
        target: Callable[..., None] = chronik_writer
        args: tuple[Any, ...] = (url,)

        def tail() -> None:
            chronik_tail(reader, stop, seen)
    else:
        create_schema(base, schema)
        reader = es_recorder(base, schema, create=True)
        target = es_writer
        args = (base, schema)

        def tail() -> None:
            es_tail(reader, stop, seen)

    processes = [
        context.Process(target=target, args=(*args, index, seconds, start, results))
        for index in range(writers)
    ]
    tailer = threading.Thread(target=tail, daemon=True)
    committed: dict[str, int] = {}
    try:
        for process in processes:
            process.start()
        start.wait(timeout=120)
        if with_reader:
            tailer.start()
        for _ in processes:
            committed.update(results.get(timeout=seconds + 120))
        for process in processes:
            process.join(timeout=60)
        # Let the reader catch up with everything committed, then stop it.
        deadline = time.monotonic() + 30
        while (
            with_reader
            and time.monotonic() < deadline
            and (not seen or seen[-1][1] < max(committed.values(), default=0))
        ):
            time.sleep(0.05)
    finally:
        for process in processes:  # only ours, and only if one is stuck
            if process.is_alive():
                process.terminate()
        stop.set()
        if tailer.is_alive():
            tailer.join(timeout=60)
        if system == "chronik":
            reader.close()
        else:
            reader.datastore.close()
        drop_schema(base, schema)
    seen_ids = [key for key, _ in seen]
    return Run(
        system=system if with_reader else f"{system} (no reader)",
        writers=writers,
        seconds=seconds,
        events=len(committed),
        events_per_second=round(len(committed) / seconds, 1),
        skipped=len(set(committed) - set(seen_ids)) if with_reader else -1,
        duplicated=len(seen_ids) - len(set(seen_ids)) if with_reader else -1,
    )


def chronik_latency(base: str, count: int) -> dict[str, float]:
    """Milliseconds from an append's acknowledgement to a waiting reader holding the event."""
    schema = f"bench_latency_{os.getpid()}"
    url = chronik_url(base, schema)
    writer, reader = open_store(url), open_store(url)
    delivered: dict[int, float] = {}
    committed: dict[int, float] = {}

    def tail() -> None:
        last = reader.head_position()
        while len(delivered) < count:
            if reader.wait_for_events(last, 1.0):
                for event in reader.read_all(last + 1):
                    delivered[event.data["i"]] = time.monotonic()
                    last = event.global_position

    thread = threading.Thread(target=tail, daemon=True)
    thread.start()
    time.sleep(0.5)
    for i in range(count):
        writer.append("tick-1", NewEvent(type="Tick", data={"i": i}))
        committed[i] = time.monotonic()
        time.sleep(0.01)
    thread.join(timeout=30)
    writer.close()
    reader.close()
    drop_schema(base, schema)
    latencies = sorted(max(0.0, delivered[i] - committed[i]) * 1000 for i in range(count) if i in delivered)
    return {
        "samples": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("CHRONIK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--writers", default="1,4,8", help="writer process counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per system and count (median reported)")
    parser.add_argument("--latency-samples", type=int, default=300)
    options = parser.parse_args()
    counts = [int(n) for n in options.writers.split(",")]
    systems = ["chronik", "eventsourcing"]
    runs: list[Run] = []
    for repetition in range(options.repeat):
        for writers in counts:
            # Alternate who goes first: on a shared machine the load drifts.
            for system in systems if repetition % 2 == 0 else systems[::-1]:
                runs.append(run(system, options.url, writers, options.seconds))
                r = runs[-1]
                print(
                    f"  run {repetition + 1}: {r.system:<14} {r.writers} writer(s): "
                    f"{r.events_per_second:>8.1f} events/s  skipped {r.skipped}, duplicated {r.duplicated}",
                    flush=True,
                )
    # The plain single-writer append rate: one writer, one event per commit, nobody reading.
    single: dict[str, list[float]] = {system: [] for system in systems}
    for repetition in range(options.repeat):
        for system in systems if repetition % 2 == 0 else systems[::-1]:
            r = run(system, options.url, 1, options.seconds, with_reader=False)
            runs.append(r)
            single[system].append(r.events_per_second)
            print(
                f"  single writer, no reader: {system:<14} {r.events_per_second:>8.1f} events/s", flush=True
            )
    latency = chronik_latency(options.url, options.latency_samples)

    def median(system: str, writers: int) -> float:
        return statistics.median(
            r.events_per_second for r in runs if r.system == system and r.writers == writers
        )

    def spread(system: str, writers: int) -> str:
        values = [r.events_per_second for r in runs if r.system == system and r.writers == writers]
        return f"{min(values):.0f}-{max(values):.0f}"

    print()
    print(
        f"{'writers':>7} | {'chronik ev/s (range)':>22} | {'eventsourcing ev/s (range)':>28} | "
        f"{'ratio':>5} | skipped/duplicated (all runs)"
    )
    summary = []
    for writers in counts:
        ours, theirs = median("chronik", writers), median("eventsourcing", writers)
        ratio = ours / theirs if theirs else float("inf")
        bad = {
            system: (
                sum(r.skipped for r in runs if r.system == system and r.writers == writers),
                sum(r.duplicated for r in runs if r.system == system and r.writers == writers),
            )
            for system in systems
        }
        summary.append(
            {
                "writers": writers,
                "chronik_events_per_second_median": ours,
                "eventsourcing_events_per_second_median": theirs,
                "ratio": round(ratio, 2),
                "chronik_skipped_duplicated": bad["chronik"],
                "eventsourcing_skipped_duplicated": bad["eventsourcing"],
            }
        )
        print(
            f"{writers:>7} | {ours:>8.1f} ({spread('chronik', writers):>11}) | "
            f"{theirs:>10.1f} ({spread('eventsourcing', writers):>15}) | {ratio:>5.2f} | "
            f"chronik {bad['chronik'][0]}/{bad['chronik'][1]}, "
            f"eventsourcing {bad['eventsourcing'][0]}/{bad['eventsourcing'][1]}"
        )
    single_ours = statistics.median(single["chronik"])
    single_theirs = statistics.median(single["eventsourcing"])
    single_ratio = round(single_ours / single_theirs, 2) if single_theirs else float("inf")
    print(
        f"\nsingle writer, 1 event per commit, no reader: chronik {single_ours:.1f} events/s, "
        f"eventsourcing {single_theirs:.1f} events/s, ratio {single_ratio:.2f}"
    )
    print(
        f"\nchronik commit-to-delivery latency ({latency['samples']} appends, 10 ms apart): "
        f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "command": "python bench/postgres_writers.py "
                f"--seconds {options.seconds:g} --writers {options.writers} --repeat {options.repeat}",
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
                "postgres": _server_version(options.url),
                "summary": summary,
                "single_writer_no_reader": {
                    "chronik_events_per_second_median": single_ours,
                    "eventsourcing_events_per_second_median": single_theirs,
                    "ratio": single_ratio,
                },
                "latency_ms": latency,
                "runs": [asdict(r) for r in runs],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS}")


def _server_version(url: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


if __name__ == "__main__":
    main()
