"""HTTP load: appends and reads per second, p50/p99 latency, 1 to 32 concurrent clients, on loopback.

    python bench/http_load.py                          # starts `chronik serve` on a temp SQLite store
    python bench/http_load.py --clients 1,8 --requests 500 --seconds 5
    python bench/http_load.py --url http://127.0.0.1:8000 --token chronik_...   # an existing server

For each number of clients: an append phase (each client appends one event at a time to its own
stream, with its expected version: the optimistic-concurrency path a real writer takes), then a
read phase (each client reads its stream's latest 20 events). Every phase stops at `--requests`
requests or `--seconds` seconds, whichever comes first, and the whole run at `--max-seconds`,
so the script always ends by itself. Clients are threads with keep-alive httpx connections, on
the same machine as the server: the figures include the client's own cost.

Prints a table and writes JSON to `bench/results/http_load.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table


@dataclass
class PhaseResult:
    operation: str
    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_phase(
    operation: str,
    clients: int,
    requests: int,
    seconds: float,
    make_request: Callable[[httpx.Client, int, int], bool],
    client_factory: Callable[[], httpx.Client],
) -> PhaseResult:
    """`clients` threads share a budget of `requests` requests and a `seconds` deadline."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    issued = iter(range(requests))
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    deadline = 0.0

    def worker(number: int) -> None:
        with client_factory() as client:
            start_gate.wait()
            sequence = 0
            while time.perf_counter() < deadline:
                with lock:
                    if next(issued, None) is None:
                        return
                began = time.perf_counter()
                ok = make_request(client, number, sequence)
                latencies[number].append(time.perf_counter() - began)
                sequence += 1
                if not ok:
                    errors[number] += 1

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds + 1e9  # set properly once every client is connected
    start_gate.wait()
    began = time.perf_counter()
    deadline = began + seconds
    for thread in threads:
        thread.join(seconds + 30)
    elapsed = time.perf_counter() - began
    flat = sorted(value for per_client in latencies for value in per_client)
    done = len(flat)
    return PhaseResult(
        operation=operation,
        clients=clients,
        requests=done,
        errors=sum(errors),
        seconds=round(elapsed, 3),
        requests_per_second=round(done / elapsed, 1) if elapsed else 0.0,
        p50_ms=round(percentile(flat, 0.50) * 1000, 2),
        p99_ms=round(percentile(flat, 0.99) * 1000, 2),
        max_ms=round((flat[-1] if flat else 0.0) * 1000, 2),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(store_url: str) -> Iterator[str]:
    """`chronik serve` in a child process on a free loopback port; stopped (SIGINT) at the end."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chronik",
            "serve",
            "--port",
            str(port),
            "--store",
            store_url,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"chronik serve did not start: {process.stderr.read() if process.stderr else ''}"
                )
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="An existing server (default: start one on a temporary SQLite store).")
    parser.add_argument("--token", help="API key for --url.")
    parser.add_argument(
        "--store-query", default="", help="Query for the temporary store URL, e.g. ?synchronous=normal."
    )
    parser.add_argument("--clients", default="1,4,16,32", help="Comma-separated client counts.")
    parser.add_argument("--requests", type=int, default=2000, help="Requests per phase, at most.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Seconds per phase, at most.")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="The whole run stops after this.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "http_load.json")
    args = parser.parse_args(argv)
    levels = [int(item) for item in args.clients.split(",") if item.strip()]
    if not levels or min(levels) < 1 or max(levels) > 256:
        parser.error("--clients takes counts from 1 to 256")
    console = Console()
    results: list[PhaseResult] = []
    run_started = time.monotonic()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    run_id = f"{int(time.time())}"

    with (
        tempfile.TemporaryDirectory() as directory,
        contextmanager(lambda: (yield args.url))()
        if args.url
        else served(f"sqlite:///{Path(directory) / 'load.db'}{args.store_query}") as url,
    ):

        def client_factory() -> httpx.Client:
            return httpx.Client(base_url=url, headers=headers, timeout=30)

        for clients in levels:
            if time.monotonic() - run_started > args.max_seconds:
                console.print(f"[yellow]--max-seconds reached; skipping {clients} clients and more[/]")
                break
            versions: dict[int, int] = {}

            def append(
                client: httpx.Client,
                number: int,
                sequence: int,
                clients: int = clients,
                versions: dict[int, int] = versions,
            ) -> bool:
                stream = f"load{run_id}-{clients}c-{number}"
                expected: int | str = versions.get(number, -1)
                body = {
                    "events": [
                        {"type": "Measured", "data": {"client": number, "sequence": sequence, "value": 42.5}}
                    ],
                    "expected_version": "no_stream" if expected == -1 else expected,
                }
                response = client.post(f"/api/streams/{stream}/events", json=body)
                if response.status_code != 200:
                    return False
                versions[number] = response.json()["stream_version"]
                return True

            def read(client: httpx.Client, number: int, sequence: int, clients: int = clients) -> bool:
                stream = f"load{run_id}-{clients}c-{number}"
                response = client.get(
                    f"/api/streams/{stream}/events", params={"backwards": True, "limit": 20}
                )
                return response.status_code == 200

            for operation, request in (("append", append), ("read", read)):
                result = run_phase(operation, clients, args.requests, args.seconds, request, client_factory)
                results.append(result)
                console.print(
                    f"{operation:>6} x{clients:<3} {result.requests_per_second:>8.1f} req/s  "
                    f"p50 {result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms  errors {result.errors}",
                    highlight=False,
                )

    table = Table(title="chronik HTTP load (loopback, one uvicorn process)")
    for column in ("operation", "clients", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for r in results:
        table.add_row(
            r.operation,
            str(r.clients),
            str(r.requests),
            str(r.errors),
            f"{r.requests_per_second:.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
        )
    console.print(table)
    report = {
        "benchmark": "http_load",
        "target": args.url or f"chronik serve on a temporary SQLite store{args.store_query}",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "requests_per_phase": args.requests,
        "seconds_per_phase": args.seconds,
        "results": [asdict(r) for r in results],
        "medians": {
            op: statistics.median([r.requests_per_second for r in results if r.operation == op] or [0])
            for op in ("append", "read")
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
