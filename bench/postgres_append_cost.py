"""Where a one-event append on PostgreSQL spends CPU: in this process and in its server backends.

    .venv/bin/python bench/postgres_append_cost.py [--url postgresql://postgres@127.0.0.1:5432/test]

Why this exists: with many writers on a small machine, appends per second are bounded by CPU
(client + server per append), not by locks; `bench/postgres_writers.py` shows the rate, this
shows the cost that bounds it. One writer appends `--appends` one-event commits to 100 streams;
the client's user and system CPU come from getrusage, the server's from /proc/<pid>/stat of the
store's backends (so the server must run on this machine; otherwise it is reported as null).
Measured twice: as the store runs, and without the NOTIFY transaction that follows each commit
(`commit_and_notify` replaced by a bare COMMIT, for this measurement only), to show that part's
share. Writes `bench/results/postgres_append_cost.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from chronik.events.envelope import NewEvent
from chronik.store.postgres import PostgresStore

SCHEMA = f"bench_cost_{os.getpid()}"


def backend_cpu_seconds(url: str, application_name: str) -> float | None:
    """User + system CPU of the store's server backends so far, if they run on this machine."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    ticks = 0
    for (pid,) in rows:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(url: str, appends: int, *, notify: bool) -> dict[str, Any]:
    store = PostgresStore(url, schema=SCHEMA)
    if not notify:
        store.commit_and_notify = "COMMIT"
    streams = [f"account-{i}" for i in range(100)]

    def run(count: int) -> None:
        for i in range(count):
            store.append(streams[i % 100], NewEvent(type="Deposited", data={"amount": i, "reference": "ref"}))

    try:
        run(200)  # warm: connections, prepared plans
        application_name = store.connect_kwargs["application_name"]
        server_before = backend_cpu_seconds(url, application_name)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        run(appends)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        server_after = backend_cpu_seconds(url, application_name)
    finally:
        store.close()
    server = (
        None
        if server_before is None or server_after is None
        else round((server_after - server_before) / appends * 1e6, 1)
    )
    return {
        "notify": notify,
        "appends": appends,
        "appends_per_second": round(appends / elapsed, 1),
        "client_user_us": round((after.ru_utime - before.ru_utime) / appends * 1e6, 1),
        "client_system_us": round((after.ru_stime - before.ru_stime) / appends * 1e6, 1),
        "server_us": server,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--json", default="bench/results/postgres_append_cost.json")
    args = parser.parse_args(argv)
    results = []
    try:
        for notify in (True, False):
            result = measure(args.url, args.appends, notify=notify)
            results.append(result)
            print(
                f"{'with' if notify else 'without'} the NOTIFY: {result['appends_per_second']} appends/s, "
                f"client {result['client_user_us']} us user + {result['client_system_us']} us system, "
                f"server {result['server_us']} us per append"
            )
    finally:
        with psycopg.connect(args.url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    output = Path(args.json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"cores": os.cpu_count(), "results": results}, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
