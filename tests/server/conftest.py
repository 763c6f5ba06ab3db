"""A real uvicorn on a free loopback port, around a fresh SQLite store, for every server test.

`LiveServer` runs uvicorn in a thread of the test process (so a test can reach the store and
the server's state directly) and stops it at the end of the test; requests go through httpx
over real TCP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from chronik.server import ServerState, create_app
from chronik.store import EventStore, open_store


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    app: FastAPI
    store: EventStore
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.chronik
        return state

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_server(app: FastAPI, store: EventStore) -> LiveServer:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return LiveServer(app, store, f"http://127.0.0.1:{port}", server, thread)


ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers around fresh stores: `make_server(query="?max_event_bytes=2000", max_body_bytes=...)`."""
    started: list[LiveServer] = []
    counter = iter(range(1000))

    def make(*, query: str = "", store: EventStore | None = None, **options: Any) -> LiveServer:
        if store is None:
            store = open_store(f"sqlite:///{tmp_path / f'server-{next(counter)}.db'}{query}")
        live = start_server(create_app(store, **options), store)
        started.append(live)
        return live

    yield make
    for live in started:
        live.stop()
        live.store.close()


@pytest.fixture
def live(make_server: ServerFactory) -> LiveServer:
    return make_server()


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


def event(type_: str = "Happened", **data: Any) -> dict[str, Any]:
    return {"type": type_, "data": data}


def wait_for(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@dataclass
class ServeProcess:
    url: str
    process: subprocess.Popen[str]
    errors: str = ""  # stderr, once stopped


@contextlib.contextmanager
def chronik_serve(store_url: str, *args: str, timeout: float = 30) -> Iterator[ServeProcess]:
    """A real `chronik serve` process on a free loopback port, ready; stopped with SIGINT at the end.

    The caller checks `errors` and `process.returncode` after the block (0 or 130: uvicorn
    re-raises the SIGINT it handled).
    """
    port = free_port()
    env = {**os.environ, "CHRONIK_STORE": store_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "chronik", "serve", "--port", str(port), "--log-level", "warning", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = ServeProcess(f"http://127.0.0.1:{port}", process)

    def up() -> bool:
        try:
            return httpx.get(f"{served.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return False

    try:
        wait_for(up, timeout=timeout)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang is a failure, but never a leak
            process.kill()
            pytest.fail("chronik serve did not stop on SIGINT within 15 s")
        served.errors = process.stderr.read() if process.stderr else ""
