"""The asyncio face of any synchronous store: its calls run on a bounded pool of threads.

`chronik.aio.open_store` gives every backend without a native asyncio driver (memory, SQLite,
any backend `chronik.open_store` knows) this adapter, so the event loop never waits for a disk or a
lock: a call becomes `await` of the same call on one of the store's threads. How it keeps the
synchronous contract:

* **A bounded pool, never a thread per request** (`max_threads`, default 16). Appends from many
  tasks run on several threads at once, which is what SQLite's writers (and its group commit,
  where the store has one) need to overlap; past `max_threads`, calls queue for a thread.
* **A unit of work runs on one thread for its whole life** (SQLite connections are per thread;
  the memory store's lock is held by a thread): `transaction()` takes a thread from the pool and
  keeps it until commit or rollback, and every step of the unit of work, and every read the task
  makes meanwhile through this store, runs there, in order, seeing the transaction's own writes as
  the synchronous face does. Keep units of work short and fewer than `max_threads` at once.
* **Waiting** polls the head on a thread every few milliseconds while anyone waits (one watcher
  for all waiters), and an append through this store wakes the waiters at once. A store that can
  push (it overrides `wait_for_events`) is waited on through its own `wait_for_events`, on one
  thread for all waiters.
* **Append hooks** (inline projections) are the synchronous store's: add them to `.sync`; they run
  on the append's thread, inside its transaction, as always.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from chronik.aio.store import AsyncEventStore, AsyncUnitOfWork, HeadWatch
from chronik.errors import ChronikError
from chronik.events.envelope import ANY, ExpectedVersion, NewEvent, RecordedEvent
from chronik.store.contract import (
    AppendRequest,
    AppendResult,
    EventPayload,
    EventStore,
    ExistingEvent,
    Snapshot,
    StreamInfo,
    UnitOfWork,
)

DEFAULT_THREADS: Final = 16
_T = TypeVar("_T")


class _Commit:
    """The session's last request: commit (or roll back) and give the thread back."""

    def __init__(self, commit: bool) -> None:
        self.commit = commit


class _RollBack(Exception):
    """Raised inside the synchronous unit of work to roll it back."""


class ThreadedUnitOfWork(AsyncUnitOfWork):
    """A synchronous unit of work held open on one thread; its steps are sent there in order."""

    store: ThreadedStore

    def __init__(self, store: ThreadedStore) -> None:
        super().__init__(store)
        self._requests: queue.SimpleQueue[
            tuple[Callable[[UnitOfWork], Any], concurrent.futures.Future[Any]] | _Commit
        ] = queue.SimpleQueue()
        self._opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._session: asyncio.Future[None] | None = None

    async def run_sync(self, step: Callable[[UnitOfWork], _T]) -> _T:
        """Run `step(sync_unit_of_work)` on this unit of work's thread: e.g. SQL through
        `uow.connection` on SQLite, so that it commits with the events and the checkpoint."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._requests.put((step, future))
        return await asyncio.wrap_future(future)

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        return await self.run_sync(lambda uow: uow.append(stream, events, expected_version))

    async def lock_streams(self, streams: Sequence[str]) -> None:
        await self.run_sync(lambda uow: uow.lock_streams(streams))

    async def save_checkpoint(self, name: str, position: int) -> None:
        await self.run_sync(lambda uow: uow.save_checkpoint(name, position))

    async def _begin(self) -> None:
        loop = asyncio.get_running_loop()
        self._session = loop.run_in_executor(self.store.executor, self._hold)
        try:
            await asyncio.wrap_future(self._opened)
        except BaseException:
            self._requests.put(_Commit(False))  # if it opened meanwhile (this task was cancelled)
            await asyncio.gather(self._session, return_exceptions=True)
            raise

    async def _end(self, *, commit: bool) -> None:
        """Commit (or roll back) on the thread, and wait for it: the outcome is known on return."""
        self._requests.put(_Commit(commit))
        assert self._session is not None
        if commit:
            await asyncio.shield(self._session)
        else:
            with contextlib.suppress(_RollBack):
                await asyncio.shield(self._session)

    def _hold(self) -> None:
        """On the pool's thread: open the synchronous unit of work and serve its steps until the end."""
        try:
            with self.store.sync.transaction() as uow:
                self._opened.set_result(None)
                while True:
                    request = self._requests.get()
                    if isinstance(request, _Commit):
                        if not request.commit:
                            raise _RollBack()
                        return
                    step, future = request
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(step(uow))
                        except BaseException as error:
                            future.set_exception(error)
        except BaseException as error:
            if not self._opened.done():
                self._opened.set_exception(error)
            raise


class _ThreadedWatch(HeadWatch):
    """Waits through the synchronous store's own `wait_for_events` when it has one that can push
    (one thread call at a time for all waiters); else polls like `HeadWatch`."""

    def __init__(self, store: ThreadedStore) -> None:
        super().__init__(store.head_position)
        self._store = store
        self._pushes = type(store.sync).wait_for_events is not EventStore.wait_for_events
        self._in_flight: asyncio.Future[bool] | None = None

    async def pause(self, rose: bool) -> None:
        if not self._pushes:
            await super().pause(rose)
            return
        if self._in_flight is None or self._in_flight.done():
            loop = asyncio.get_running_loop()
            wait = functools.partial(self._store.sync.wait_for_events, self.known, 0.25)
            self._in_flight = loop.run_in_executor(self._store.executor, wait)
        poked = asyncio.ensure_future(self._poked.wait())
        either: set[asyncio.Future[Any]] = {self._in_flight, poked}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            poked.cancel()


class ThreadedStore(AsyncEventStore):
    """Any synchronous `EventStore` (`.sync`) as an `AsyncEventStore`, on `max_threads` threads."""

    def __init__(
        self, store: EventStore, *, max_threads: int = DEFAULT_THREADS, close_sync: bool = True
    ) -> None:
        """`close_sync=False` leaves `store` open at `close()`, for a caller that lent it (a server
        around a store its own caller opened and closes)."""
        if max_threads < 1:
            raise ChronikError(f"max_threads must be at least 1, not {max_threads!r}")
        super().__init__(clock=store.clock, max_event_bytes=store.max_event_bytes)
        self.sync = store
        self.url = store.url
        self.max_threads = max_threads
        self.close_sync = close_sync
        self.executor = concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="chronik-aio")
        self._watch = _ThreadedWatch(self)
        self._closed = False

    async def _call(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """`call(*args, **kwargs)` on a thread: the pool's, or the thread of this task's open unit of
        work (so that the task reads its own uncommitted writes, and never waits for its own lock)."""
        if self._closed:
            raise ChronikError(f"{self!r} is closed")
        uow = self.open_unit_of_work()
        if isinstance(uow, ThreadedUnitOfWork):
            return await uow.run_sync(lambda _: call(*args, **kwargs))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(call, *args, **kwargs))

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        self.refuse_nesting()
        result = await self._call(self.sync.append, stream, events, expected_version)
        self._watch.poke()
        return result

    async def append_many(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        self.refuse_nesting()
        results = await self._call(self.sync.append_many, list(requests))
        self._watch.poke()
        return results

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncUnitOfWork]:
        if self._closed:
            raise ChronikError(f"{self!r} is closed")
        uow = ThreadedUnitOfWork(self)
        await uow._begin()
        try:
            yield uow
        except BaseException:
            await uow._end(commit=False)
            raise
        await uow._end(commit=True)
        self._watch.poke()

    # -- reading -----------------------------------------------------------------------------

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[RecordedEvent]:
        return await self._call(
            self.sync.read_stream,
            stream,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            limit=limit,
            recorded_until=recorded_until,
            occurred_until=occurred_until,
        )

    async def read_stream_payloads(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[EventPayload]:
        return await self._call(
            self.sync.read_stream_payloads,
            stream,
            from_version=from_version,
            to_version=to_version,
            recorded_until=recorded_until,
            occurred_until=occurred_until,
        )

    async def read_all(
        self,
        from_position: int = 0,
        *,
        to_position: int | None = None,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        return await self._call(
            self.sync.read_all,
            from_position,
            to_position=to_position,
            categories=categories,
            event_types=event_types,
            limit=limit,
        )

    async def head_position(self) -> int:
        return await self._call(self.sync.head_position)

    async def stream_version(self, stream: str) -> int | None:
        return await self._call(self.sync.stream_version, stream)

    async def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        return await self._call(self.sync.list_streams, prefix=prefix, limit=limit)

    async def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]:
        return await self._call(self.sync.find_events, event_ids)

    async def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        return await self._call(self.sync.read_correlated, correlation_id)

    # -- checkpoints and snapshots -------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> int | None:
        return await self._call(self.sync.load_checkpoint, name)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._call(self.sync.save_snapshot, snapshot)

    async def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        return await self._call(
            self.sync.load_snapshot, stream, schema_version=schema_version, at_or_before=at_or_before
        )

    async def delete_snapshots(self, stream: str | None = None) -> int:
        return await self._call(self.sync.delete_snapshots, stream)

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Wait for the calls in flight, then close the synchronous store (on a thread)."""
        if self._closed:
            return
        self._closed = True
        await super().close()
        await asyncio.get_running_loop().run_in_executor(None, self._shut_down)

    def _shut_down(self) -> None:
        self.executor.shutdown(wait=True)
        if self.close_sync:
            self.sync.close()
