"""HTTP load on `chronik serve`: appends, reads and live SSE delivery, from a separate load process.

    python bench/http_load.py                          # starts `chronik serve` on a temp SQLite store
    python bench/http_load.py --clients 1,4,32,128 --seconds 5 --subscribers 200
    python bench/http_load.py --repeat 3 --out bench/results/http_load.json
    python bench/http_load.py --url http://127.0.0.1:8000 --token chronik_...   # an existing server

For each number of clients: an append phase (each client appends one event at a time to its own
stream, with its expected version: the optimistic-concurrency path a real writer takes), then a
read phase (each client reads its stream's latest 20 events). Then the SSE phase: `--subscribers`
clients follow one live tail (`/api/log/subscribe`) from the head, one writer appends
`--sse-events` events at `--sse-rate` a second, and each subscriber measures each event's
delivery latency: the time it parsed the event minus the event's `recorded_at` (stamped just
before the commit, so the figure includes the commit itself).

The load generator is a separate process (`--generate`, started by this script): one asyncio loop
with hand-written HTTP/1.1 keep-alive connections (no client library), so that it costs little.
Its CPU time and the server's are measured per phase (`getrusage`, `/proc/<pid>/stat`) and
reported: a generator near 100% of a core would be the bottleneck, not the server.
Every phase stops after `--seconds`, and each run after `--max-seconds`: the script always ends.

Prints a table and writes JSON (every run, and the median per phase) to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

TICKS = os.sysconf("SC_CLK_TCK")


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
    generator_cpu_percent: float = 0.0  # of one core, over the phase
    server_cpu_percent: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


# -- the load generator (a separate process) ---------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole response (Content-Length)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, method: str, path: str, body: bytes | None = None) -> None:
        assert self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))

    async def head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        assert self.reader is not None
        self.send(method, path, body)
        status, headers = await self.head()
        return status, await self.reader.readexactly(int(headers.get("content-length", "0")))

    async def chunks(self) -> Any:
        """The chunks of a chunked response body (an SSE stream), as they arrive."""
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                return
            data = await self.reader.readexactly(size + 2)
            yield data[:-2]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def timed_phase(
    operation: str,
    clients: int,
    seconds: float,
    connections: list[Connection],
    one: Callable[[Connection, int, int], Awaitable[bool]],
    server_pid: int,
) -> PhaseResult:
    """Every client sends one request at a time until the deadline; latencies of all of them."""
    latencies: list[float] = []
    errors = 0
    deadline = 0.0

    async def client(number: int) -> None:
        nonlocal errors
        connection = connections[number]
        sequence = 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            ok = await one(connection, number, sequence)
            latencies.append(time.perf_counter() - began)
            sequence += 1
            errors += not ok

    cpu, server_cpu, began = cpu_seconds(), process_cpu_seconds(server_pid), time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    return summarize(
        operation, clients, latencies, errors, elapsed, cpu, process_cpu_seconds(server_pid) - server_cpu
    )


def summarize(
    operation: str,
    clients: int,
    latencies: list[float],
    errors: int,
    elapsed: float,
    cpu_before: float,
    server_cpu: float,
    *,
    count_per_second: bool = True,
) -> PhaseResult:
    flat = sorted(latencies)
    return PhaseResult(
        operation=operation,
        clients=clients,
        requests=len(flat),
        errors=errors,
        seconds=round(elapsed, 3),
        requests_per_second=round(len(flat) / elapsed, 1) if elapsed and count_per_second else 0.0,
        p50_ms=round(percentile(flat, 0.50) * 1000, 2),
        p99_ms=round(percentile(flat, 0.99) * 1000, 2),
        max_ms=round((flat[-1] if flat else 0.0) * 1000, 2),
        generator_cpu_percent=round(100 * (cpu_seconds() - cpu_before) / elapsed, 1) if elapsed else 0.0,
        server_cpu_percent=round(100 * server_cpu / elapsed, 1) if elapsed else 0.0,
    )


async def append_and_read(spec: dict[str, Any], clients: int) -> list[PhaseResult]:
    host, port, headers = spec["host"], spec["port"], spec["headers"]
    connections = [Connection(host, port, headers) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in connections))
    versions: dict[int, int] = {}
    run = f"load{spec['run_id']}-{clients}c"

    async def append(connection: Connection, number: int, sequence: int) -> bool:
        expected: int | str = versions.get(number, "no_stream")
        event = {"type": "Measured", "data": {"client": number, "sequence": sequence, "value": 42.5}}
        body = json.dumps({"events": [event], "expected_version": expected}).encode()
        status, answer = await connection.request("POST", f"/api/streams/{run}-{number}/events", body)
        if status != 200:
            return False
        versions[number] = json.loads(answer)["stream_version"]
        return True

    async def read(connection: Connection, number: int, sequence: int) -> bool:
        path = f"/api/streams/{run}-{number}/events?backwards=true&limit=20"
        status, _ = await connection.request("GET", path)
        return status == 200

    results = []
    for operation, one in (("append", append), ("read", read)):
        result = await timed_phase(operation, clients, spec["seconds"], connections, one, spec["server_pid"])
        results.append(result)
    for connection in connections:
        connection.close()
    return results


async def sse(spec: dict[str, Any]) -> PhaseResult:
    """`subscribers` live tails from the head; one writer; latency = parsed - recorded_at."""
    host, port, headers = spec["host"], spec["port"], spec["headers"]
    subscribers, events, rate = spec["subscribers"], spec["sse_events"], spec["sse_rate"]
    writer = Connection(host, port, headers)
    await writer.open()
    status, body = await writer.request("GET", "/api/log?limit=1")
    start = json.loads(body)["head_position"] + 1
    latencies: list[float] = []
    received = [0] * subscribers
    ready = asyncio.Semaphore(0)
    stream = f"sse{spec['run_id']}"

    async def subscriber(number: int) -> None:
        connection = Connection(host, port, headers)
        await connection.open()
        path = f"/api/log/subscribe?from_position={start}&max_events={events}&timeout=120&heartbeat=5"
        connection.send("GET", path)
        status, _ = await connection.head()
        if status != 200:
            ready.release()
            return
        buffer = b""
        async for chunk in connection.chunks():
            buffer += chunk
            while b"\n\n" in buffer:
                message, buffer = buffer.split(b"\n\n", 1)
                if message.startswith(b"event: caught_up"):
                    ready.release()
                elif message.startswith(b"event: end"):
                    connection.close()
                    return
                elif message.startswith(b"id: "):
                    now = time.time()
                    data = json.loads(message.split(b"\ndata: ", 1)[1])
                    latencies.append(now - datetime.fromisoformat(data["recorded_at"]).timestamp())
                    received[number] += 1
        connection.close()

    tasks = [asyncio.create_task(subscriber(n)) for n in range(subscribers)]
    for _ in range(subscribers):
        await ready.acquire()
    cpu, server_cpu, began = cpu_seconds(), process_cpu_seconds(spec["server_pid"]), time.perf_counter()
    errors = 0
    for sequence in range(events):
        event = {"type": "Ticked", "data": {"sequence": sequence}}
        payload = json.dumps({"events": [event]}).encode()
        status, _ = await writer.request("POST", f"/api/streams/{stream}/events", payload)
        errors += status != 200
        await asyncio.sleep(max(0.0, began + (sequence + 1) / rate - time.perf_counter()))
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    except TimeoutError:
        for task in tasks:
            task.cancel()
    elapsed = time.perf_counter() - began
    writer.close()
    result = summarize(
        "sse",
        subscribers,
        latencies,
        errors + sum(events - count for count in received),
        elapsed,
        cpu,
        process_cpu_seconds(spec["server_pid"]) - server_cpu,
        count_per_second=False,
    )
    result.extra = {"events": events, "rate_per_second": rate, "deliveries": len(latencies)}
    return result


async def generate(spec: dict[str, Any]) -> list[PhaseResult]:
    results = []
    for clients in spec["levels"]:
        results.extend(await append_and_read(spec, clients))
    if spec["subscribers"]:
        results.append(await sse(spec))
    return results


# -- the orchestration (this process) ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(store_url: str) -> Iterator[tuple[str, int]]:
    """`chronik serve` in a child process on a free loopback port; stopped (SIGINT) at the end."""
    port = free_port()
    command = [sys.executable, "-m", "chronik", "serve", "--port", str(port), "--store", store_url]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"chronik serve did not start: {process.stderr.read() if process.stderr else ''}"
                )
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_generator(spec: dict[str, Any], max_seconds: float) -> list[PhaseResult]:
    """The generator in its own process; its results come back as JSON on stdout."""
    done = subprocess.run(
        [sys.executable, __file__, "--generate", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=max_seconds,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed:\n{done.stderr}")
    return [PhaseResult(**item) for item in json.loads(done.stdout)]


def one_run(args: argparse.Namespace, levels: list[int], run_number: int) -> list[PhaseResult]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with tempfile.TemporaryDirectory() as directory:
        target = (
            contextmanager(lambda: (yield args.url, 0))()
            if args.url
            else served(f"sqlite:///{Path(directory) / 'load.db'}{args.store_query}")
        )
        with target as (url, pid):
            parts = urlsplit(url)
            spec = {
                "host": parts.hostname,
                "port": parts.port or 80,
                "headers": headers,
                "levels": levels,
                "seconds": args.seconds,
                "subscribers": args.subscribers,
                "sse_events": args.sse_events,
                "sse_rate": args.sse_rate,
                "run_id": f"{int(time.time())}r{run_number}",
                "server_pid": pid,
            }
            return run_generator(spec, args.max_seconds)


def table(title: str, results: list[PhaseResult]) -> Table:
    shown = Table(title=title)
    columns = ("operation", "clients", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms")
    for column in (*columns, "server CPU %", "generator CPU %"):
        shown.add_column(column, justify="left" if column == "operation" else "right")
    for r in results:
        rate = (
            f"{r.requests_per_second:.0f}"
            if r.operation != "sse"
            else f"{r.extra.get('rate_per_second')}/s in"
        )
        shown.add_row(
            r.operation,
            str(r.clients),
            str(r.requests),
            str(r.errors),
            rate,
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
            f"{r.server_cpu_percent:.0f}",
            f"{r.generator_cpu_percent:.0f}",
        )
    return shown


def medians(runs: list[list[PhaseResult]]) -> list[PhaseResult]:
    """Per phase, the median of each figure over the runs (errors: the largest)."""
    merged = []
    for index, first in enumerate(runs[0]):
        same = [run[index] for run in runs if len(run) > index]

        def median(name: str, same: list[PhaseResult] = same) -> float:
            return round(statistics.median(getattr(r, name) for r in same), 2)

        merged.append(
            PhaseResult(
                operation=first.operation,
                clients=first.clients,
                requests=int(median("requests")),
                errors=max(r.errors for r in same),
                seconds=median("seconds"),
                requests_per_second=median("requests_per_second"),
                p50_ms=median("p50_ms"),
                p99_ms=median("p99_ms"),
                max_ms=median("max_ms"),
                generator_cpu_percent=median("generator_cpu_percent"),
                server_cpu_percent=median("server_cpu_percent"),
                extra=first.extra,
            )
        )
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="An existing server (default: start one on a temporary SQLite store).")
    parser.add_argument("--token", help="API key for --url.")
    parser.add_argument(
        "--store-query", default="", help="Query for the temporary store URL, e.g. ?synchronous=normal."
    )
    parser.add_argument("--clients", default="1,4,32,128", help="Comma-separated client counts.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Seconds per append or read phase.")
    parser.add_argument("--subscribers", type=int, default=200, help="SSE subscribers (0: no SSE phase).")
    parser.add_argument("--sse-events", type=int, default=200, help="Events appended during the SSE phase.")
    parser.add_argument("--sse-rate", type=float, default=50.0, help="Events a second during the SSE phase.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs (a fresh server each); medians reported.")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="Each run stops after this.")
    parser.add_argument("--label", default="", help="Recorded in the JSON (e.g. before, after).")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "http_load.json")
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # the load generator's own process
    args = parser.parse_args(argv)
    if args.generate:
        results = asyncio.run(generate(json.loads(args.generate)))
        print(json.dumps([asdict(r) for r in results]))
        return
    levels = [int(item) for item in args.clients.split(",") if item.strip()]
    if not levels or min(levels) < 1 or max(levels) > 512 or not 0 <= args.subscribers <= 2000:
        parser.error("--clients takes counts from 1 to 512, --subscribers from 0 to 2000")
    console = Console(width=150)
    load_before = os.getloadavg()
    runs = []
    for number in range(args.repeat):
        runs.append(one_run(args, levels, number))
        console.print(table(f"run {number + 1} of {args.repeat}", runs[-1]))
    summary = medians(runs)
    console.print(
        table(f"chronik HTTP load, median of {args.repeat} (loopback, one uvicorn process)", summary)
    )
    report = {
        "benchmark": "http_load",
        "label": args.label,
        "target": args.url or f"chronik serve on a temporary SQLite store{args.store_query}",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seconds_per_phase": args.seconds,
        "medians": [asdict(r) for r in summary],
        "runs": [[asdict(r) for r in run] for run in runs],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out} (load average before {load_before}, after {os.getloadavg()})")


if __name__ == "__main__":
    main()
