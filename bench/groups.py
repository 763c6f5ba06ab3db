"""Consumer-group benchmark: drain throughput with 1 and 3 worker processes, and rebalance time.

Run: .venv/bin/python bench/groups.py [--events 100000] [--ttl 2.0] [--synchronous full]

Prints a table and writes bench/results/groups.json. The workers are real `chronik worker`
processes (python -m chronik.cli.groups worker) with a trivial handler, on a SQLite file with
synchronous=FULL (an fsync per commit) unless told otherwise; the output says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from chronik import AppendRequest, NewEvent, open_store
from chronik.groups import coordinator_for
from chronik.store import EventStore

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "groups.json"
STREAMS = 1000
PARTITIONS = 16


def fill(store: EventStore, events: int) -> None:
    per_round = STREAMS
    for start in range(0, events, per_round):
        count = min(per_round, events - start)
        store.append_many(
            AppendRequest(f"bench-{s}", [NewEvent(type="Happened", data={"n": start + s})])
            for s in range(count)
        )


def spawn(
    url: str, group: str, member: str, ttl: float, batch_size: int, handler: str = "noop"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "chronik.cli.groups", "worker", group),
            *("--handler", f"tests.groups.handlers:{handler}", "--store", url),
            *("--partitions", str(PARTITIONS), "--category", "bench", "--member-id", member),
            *("--lease-ttl", str(ttl), "--batch-size", str(batch_size), "--log-level", "WARNING"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def drain(
    url: str, store: EventStore, workers: int, ttl: float, batch_size: int, handler: str
) -> dict[str, float | str]:
    group = f"drain-{handler}-{workers}"
    head = store.head_position()
    coordinator = coordinator_for(store)
    started = time.perf_counter()
    processes = [spawn(url, group, f"m{i}", ttl, batch_size, handler) for i in range(workers)]
    first_progress = None
    try:
        while True:
            try:
                rows = coordinator.partition_rows(group)
            except Exception:
                rows = []
            if rows and first_progress is None and any(row.checkpoint > 0 for row in rows):
                first_progress = time.perf_counter()
            if rows and all(row.checkpoint >= head for row in rows):
                break
            time.sleep(0.01)
        done = time.perf_counter()
    finally:
        stop(processes)
    events = len(store.read_all(categories=["bench"]))
    return {
        "handler": handler,
        "workers": workers,
        "events": events,
        "seconds_from_spawn": round(done - started, 3),
        "events_per_second_from_spawn": round(events / (done - started)),
        "seconds_from_first_commit": round(done - (first_progress or started), 3),
    }


def rebalance_times(url: str, store: EventStore, ttl: float) -> dict[str, float]:
    """Seconds until the partitions are balanced again after a member dies, joins, and leaves."""
    group = "rebalance"
    coordinator = coordinator_for(store)

    def balanced_among(*members: str) -> bool:
        try:
            owners = Counter(row.owner for row in coordinator.partition_rows(group))
        except Exception:
            return False
        counts = [owners[m] for m in members]
        return set(owners) == set(members) and max(counts) - min(counts) <= 1

    def wait_balanced(*members: str, timeout: float = 60.0) -> float:
        started = time.perf_counter()
        while not balanced_among(*members):
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{members} never balanced")
            time.sleep(0.005)
        return time.perf_counter() - started

    processes = {f"r{i}": spawn(url, group, f"r{i}", ttl, 1000) for i in range(3)}
    try:
        wait_balanced("r0", "r1", "r2")
        time.sleep(ttl)  # steady state
        processes["r0"].send_signal(signal.SIGKILL)
        died = wait_balanced("r1", "r2")
        processes["r3"] = spawn(url, group, "r3", ttl, 1000)
        joined = wait_balanced("r1", "r2", "r3")  # includes the new process's start-up
        processes["r1"].send_signal(signal.SIGTERM)
        left = wait_balanced("r2", "r3")
    finally:
        stop(list(processes.values()))
    return {
        "lease_ttl": ttl,
        "member_died_seconds": round(died, 3),
        "member_died_ratio_to_ttl": round(died / ttl, 2),
        "member_joined_seconds": round(joined, 3),
        "member_left_seconds": round(left, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--ttl", type=float, default=2.0, help="lease TTL of the rebalance run")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--synchronous", default="full", choices=["full", "normal"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db" + ("" if args.synchronous == "full" else "?synchronous=normal")
        store = open_store(url)
        fill(store, args.events)
        coordinator_for(store)  # create the group tables once, before the workers race for it
        # noop: the trivial handler the target is set for; apply: one appended event per input
        # event, in the checkpoint's unit of work (a realistic projection-like write).
        runs = [
            drain(url, store, workers, 10.0, args.batch_size, handler)
            for handler in ("noop", "apply")
            for workers in (1, 3)
        ]
        rebalance = rebalance_times(url, store, args.ttl)
        store.close()

    result = {
        "backend": "sqlite",
        "synchronous": args.synchronous.upper(),
        "partitions": PARTITIONS,
        "streams": STREAMS,
        "batch_size": args.batch_size,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "drain": runs,
        "rebalance": rebalance,
    }
    print(f"consumer groups on SQLite (synchronous={result['synchronous']}), {PARTITIONS} partitions")
    columns = ("handler", "workers", "events", "seconds", "events/s")
    print(" ".join(f"{c:>8}" for c in columns) + f" {'s after 1st commit':>19}")
    for run in runs:
        print(
            f"{run['handler']:>8} {run['workers']:>8} {run['events']:>8} {run['seconds_from_spawn']:>8} "
            f"{run['events_per_second_from_spawn']:>8} {run['seconds_from_first_commit']:>19}"
        )
    r = rebalance
    print(
        f"rebalance (lease TTL {r['lease_ttl']}s): member SIGKILLed {r['member_died_seconds']}s "
        f"= {r['member_died_ratio_to_ttl']} x TTL; member joined {r['member_joined_seconds']}s "
        f"(incl. process start); member left (SIGTERM) {r['member_left_seconds']}s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
