"""The contract suite's `aio` face: a small synchronous facade over an `AsyncEventStore`.

`tests/conftest.py` runs every test of `tests/contract/` twice per backend, `[memory-sync]` and
`[memory-aio]`: for the second, the store a test gets is a `BlockingFacade` that drives the store
opened by `chronik.aio.open_store` on a private event loop, so the unchanged tests exercise the
asyncio implementation (its own code on PostgreSQL, the threaded adapter elsewhere).

Each calling thread gets one task on that loop that runs its calls in order, so "one thread" of
a test is "one task" of the async store: a unit of work's steps and nesting rules are per task,
and the 16-thread races become 16 tasks appending concurrently on one loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from chronik.aio import AsyncEventStore, AsyncUnitOfWork
from chronik.aio import open_store as open_async_store
from chronik.clock import Clock
from chronik.events.envelope import ANY, ExpectedVersion, NewEvent, RecordedEvent
from chronik.store.contract import (
    AppendRequest,
    AppendResult,
    EventPayload,
    ExistingEvent,
    Snapshot,
    StreamInfo,
)

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def private_loop() -> asyncio.AbstractEventLoop:
    """One event loop on a daemon thread for the whole test process, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="aio-face-loop", daemon=True).start()
            _loop = loop
        return _loop


class _Worker:
    """The task that runs one calling thread's coroutines, one after the other."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], concurrent.futures.Future[Any]]] = (
            asyncio.Queue()
        )
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        while True:
            make, future = await self.queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(await make())
            except BaseException as error:
                future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise


class BlockingFacade:
    """The synchronous `EventStore` API over an `AsyncEventStore` (for the contract suite only)."""

    def __init__(self, store: AsyncEventStore, loop: asyncio.AbstractEventLoop) -> None:
        self.aio = store
        self._loop = loop
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self.url = store.url
        self.max_event_bytes = store.max_event_bytes
        self.clock = store.clock

    @classmethod
    def open(cls, url: str, clock: Clock | None = None) -> BlockingFacade:
        loop = private_loop()
        store = asyncio.run_coroutine_threadsafe(open_async_store(url, clock=clock), loop).result()
        return cls(store, loop)

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make()` in this thread's task on the loop and wait for its result."""
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            worker = asyncio.run_coroutine_threadsafe(self._new_worker(), self._loop).result()
            self._local.worker = worker
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(worker.queue.put_nowait, (make, future))
        return future.result()

    async def _new_worker(self) -> _Worker:
        worker = _Worker()
        self._workers.append(worker)
        return worker

    # -- the EventStore API the contract suite uses ----------------------------------------------

    def append(
        self, stream: str, events: Sequence[NewEvent] | NewEvent, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return self.run(lambda: self.aio.append(stream, events, expected_version))

    def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        return self.run(lambda: self.aio.append_many(requests))

    @contextmanager
    def transaction(self) -> Iterator[BlockingUnitOfWork]:
        manager = self.aio.transaction()
        uow = self.run(manager.__aenter__)
        try:
            yield BlockingUnitOfWork(self, uow)
        except BaseException as error:
            if not self.run(functools.partial(manager.__aexit__, type(error), error, error.__traceback__)):
                raise
        else:
            self.run(lambda: manager.__aexit__(None, None, None))

    def read_stream(self, stream: str, **bounds: Any) -> list[RecordedEvent]:
        return self.run(lambda: self.aio.read_stream(stream, **bounds))

    def read_stream_payloads(self, stream: str, **bounds: Any) -> list[EventPayload]:
        return self.run(lambda: self.aio.read_stream_payloads(stream, **bounds))

    def read_all(self, from_position: int = 0, **bounds: Any) -> list[RecordedEvent]:
        return self.run(lambda: self.aio.read_all(from_position, **bounds))

    def iter_all(self, from_position: int = 0, **options: Any) -> Iterator[RecordedEvent]:
        events = self.aio.iter_all(from_position, **options)
        while True:
            try:
                yield self.run(events.__anext__)
            except StopAsyncIteration:
                return

    def head_position(self) -> int:
        return self.run(self.aio.head_position)

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return self.run(lambda: self.aio.wait_for_events(after_position, timeout))

    def stream_version(self, stream: str) -> int | None:
        return self.run(lambda: self.aio.stream_version(stream))

    def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        return self.run(lambda: self.aio.list_streams(prefix=prefix, limit=limit))

    def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]:
        return self.run(lambda: self.aio.find_events(event_ids))

    def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        return self.run(lambda: self.aio.read_correlated(correlation_id))

    def load_checkpoint(self, name: str) -> int | None:
        return self.run(lambda: self.aio.load_checkpoint(name))

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.run(lambda: self.aio.save_snapshot(snapshot))

    def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        return self.run(
            lambda: self.aio.load_snapshot(stream, schema_version=schema_version, at_or_before=at_or_before)
        )

    def delete_snapshots(self, stream: str | None = None) -> int:
        return self.run(lambda: self.aio.delete_snapshots(stream))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()

    async def _close(self) -> None:
        for worker in self._workers:
            worker.task.cancel()
        await asyncio.gather(*(worker.task for worker in self._workers), return_exceptions=True)
        self._workers.clear()
        await self.aio.close()

    def __repr__(self) -> str:
        return f"<BlockingFacade {self.aio!r}>"


class BlockingUnitOfWork:
    def __init__(self, facade: BlockingFacade, uow: AsyncUnitOfWork) -> None:
        self._facade = facade
        self.aio = uow

    def append(
        self, stream: str, events: Sequence[NewEvent] | NewEvent, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return self._facade.run(lambda: self.aio.append(stream, events, expected_version))

    def lock_streams(self, streams: Sequence[str]) -> None:
        self._facade.run(lambda: self.aio.lock_streams(streams))

    def save_checkpoint(self, name: str, position: int) -> None:
        self._facade.run(lambda: self.aio.save_checkpoint(name, position))
