"""The asyncio face's contract: `AsyncEventStore` and `AsyncUnitOfWork`, the twins of
`chronik.store.contract`'s `EventStore` and `UnitOfWork`.

Every guarantee at the top of `store/contract.py` holds unchanged: the same checks, the same
errors, the same order; the contract suite (`tests/contract/`) runs on both faces. What asyncio
adds, and where it lives:

* **Never blocking the event loop.** Every method that talks to a database is a coroutine. A
  backend with a native asyncio driver implements them directly (PostgreSQL:
  `chronik.aio.postgres`); any other runs the synchronous store's calls on a bounded pool of
  threads (`chronik.aio.threaded`).
* **Units of work do not nest, per task.** `async with store.transaction()` inside a unit of work
  of the same store in the same task raises, as the synchronous face refuses it per thread; so
  does `store.append` there (it would wait for the unit of work's own locks). Other tasks are free.
* **Waiting, shared.** `wait_for_events` waiters of one store share one watcher of the readable
  head (`HeadWatch`): a thousand waiting tasks cost one look per change, not a thousand, and a
  cancelled waiter leaves nothing behind.
* **A store belongs to the event loop that opened it** (its pool and listener live there).

Cancelling a task that awaits an append is like losing the connection: the append may or may
not have been recorded; re-send it with the same event ids and the store acknowledges it once.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextvars import Context, ContextVar
from datetime import datetime
from typing import Final, TypeVar

from chronik.clock import Clock, system_clock
from chronik.errors import ChronikError, TransactionAborted
from chronik.events.envelope import (
    ANY,
    DEFAULT_MAX_EVENT_BYTES,
    EncodedEvent,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    check_expected_version,
    check_stream_name,
)
from chronik.store.contract import (
    ABORTED,
    WAIT_POLL_INTERVAL,
    AppendRequest,
    AppendResult,
    EventPayload,
    ExistingEvent,
    Snapshot,
    StreamInfo,
    encode_batch,
)

_T = TypeVar("_T")
DEFAULT_BATCH_SIZE: Final = 1000
# The unit of work open in this task (and the tasks it starts), if any: see `AsyncEventStore.transaction`.
_CURRENT: ContextVar[AsyncUnitOfWork | None] = ContextVar("chronik_aio_unit_of_work", default=None)


class AsyncUnitOfWork(abc.ABC):
    """One database transaction: appends and checkpoints that commit together or not at all.

    Opened by `async with store.transaction() as uow`; it commits when the block ends and rolls
    back if the block raises (or the task is cancelled). If a step raises, it can only be rolled
    back (`TransactionAborted` at the end of the block).
    """

    def __init__(self, store: AsyncEventStore) -> None:
        self.store = store
        self.owner = asyncio.current_task()
        self.open = True

    @abc.abstractmethod
    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append within this unit of work (see `EventStore.append` for the rules)."""

    @abc.abstractmethod
    async def lock_streams(self, streams: Sequence[str]) -> None:
        """Declare, before the first append, the streams this unit of work will append to (see
        `UnitOfWork.lock_streams`: with them locked first, no `WriteOrderConflict` can occur)."""

    @abc.abstractmethod
    async def save_checkpoint(self, name: str, position: int) -> None:
        """Record that the named reader has handled everything up to `position`, in this transaction."""


class CheckingUnitOfWork(AsyncUnitOfWork):
    """A unit of work of a native asyncio backend: the checks of `UnitOfWork`, then the backend's
    `_append_encoded`, `_lock_streams` and `_save_checkpoint`; a failed step aborts it."""

    def __init__(self, store: AsyncEventStore) -> None:
        super().__init__(store)
        self._aborted = False

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        stream = check_stream_name(stream)
        expected = check_expected_version(expected_version)
        batch = self.store.encode_batch(events)
        return await self._abort_on_error(self._append_encoded(stream, batch, expected))

    async def lock_streams(self, streams: Sequence[str]) -> None:
        names = sorted({check_stream_name(stream) for stream in streams})
        await self._abort_on_error(self._lock_streams(names))

    async def save_checkpoint(self, name: str, position: int) -> None:
        await self._abort_on_error(self._save_checkpoint(name, position))

    async def _abort_on_error(self, step: Awaitable[_T]) -> _T:
        try:
            return await step
        except BaseException:
            self._aborted = True
            raise

    def ensure_not_aborted(self) -> None:
        if self._aborted:
            raise TransactionAborted(ABORTED)

    @abc.abstractmethod
    async def _append_encoded(
        self, stream: str, batch: Sequence[EncodedEvent], expected: ExpectedVersion
    ) -> AppendResult: ...

    @abc.abstractmethod
    async def _lock_streams(self, streams: list[str]) -> None: ...

    @abc.abstractmethod
    async def _save_checkpoint(self, name: str, position: int) -> None: ...


class AsyncEventStore(abc.ABC):
    """The asyncio twin of `EventStore`. Open one with `await chronik.aio.open_store(url)`."""

    url: str

    def __init__(self, *, clock: Clock | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.clock: Clock = clock or system_clock
        self.max_event_bytes = max_event_bytes
        self._watch: HeadWatch = HeadWatch(self.head_position)

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append a batch to one stream, all or nothing, if the stream is at `expected_version`."""
        async with self.transaction() as uow:
            return await uow.append(stream, events, expected_version)

    async def append_many(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """Append to several streams atomically, each with its own expectation."""
        requests = self.check_requests(requests)
        async with self.transaction() as uow:
            await uow.lock_streams([r.stream for r in requests])
            return [await uow.append(r.stream, r.events, r.expected_version) for r in requests]

    def check_requests(self, requests: Iterable[AppendRequest]) -> list[AppendRequest]:
        """Check every request of an `append_many` before anything is sent."""
        requests = list(requests)
        for request in requests:
            check_stream_name(request.stream)
            check_expected_version(request.expected_version)
            self.encode_batch(request.events)
        return requests

    def encode_batch(self, events: Sequence[NewEvent] | NewEvent) -> list[EncodedEvent]:
        return encode_batch(events, self.max_event_bytes)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncUnitOfWork]:
        """Open a unit of work: it commits when the block ends, and rolls back if it raises."""
        self.refuse_nesting()
        async with self._transaction() as uow:
            token = _CURRENT.set(uow)
            try:
                yield uow
            finally:
                uow.open = False
                _CURRENT.reset(token)

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractAsyncContextManager[AsyncUnitOfWork]:
        """The backend's unit of work (the nesting check and the task's bookkeeping are done)."""

    def refuse_nesting(self) -> None:
        """Raise if this task has a unit of work of this store open: a second one (or an append
        outside it) could wait for the locks the first holds, and so for itself."""
        uow = self.open_unit_of_work()
        if uow is not None and uow.owner is asyncio.current_task():
            raise ChronikError("a unit of work is already open in this task; units of work do not nest")

    def open_unit_of_work(self) -> AsyncUnitOfWork | None:
        """The unit of work of this store open in this task or the task that started it, if any."""
        uow = _CURRENT.get()
        return uow if uow is not None and uow.open and uow.store is self else None

    # -- reading -----------------------------------------------------------------------------

    @abc.abstractmethod
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
        """A stream's events in version order (or reversed), as `EventStore.read_stream`."""

    @abc.abstractmethod
    async def read_stream_payloads(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[EventPayload]:
        """Hydration's read, as `EventStore.read_stream_payloads`."""

    @abc.abstractmethod
    async def read_all(
        self,
        from_position: int = 0,
        *,
        to_position: int | None = None,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The log from `from_position` in global order, only what is safe to read (`EventStore.read_all`)."""

    async def iter_all(
        self,
        from_position: int = 0,
        *,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        """Page through the log up to its head when the iteration starts, `batch_size` events a read."""
        head = await self.head_position()
        position = from_position
        while position <= head:
            page = await self.read_all(
                position, to_position=head, categories=categories, event_types=event_types, limit=batch_size
            )
            if not page:
                return
            for event in page:
                yield event
            position = page[-1].global_position + 1

    async def iter_stream(
        self, stream: str, *, from_version: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[RecordedEvent]:
        """Page through one stream in version order, `batch_size` events a read (`StreamNotFound`
        if it has no events)."""
        version = from_version
        while True:
            page = await self.read_stream(stream, from_version=version, limit=batch_size)
            for event in page:
                yield event
            if len(page) < batch_size:
                return
            version = page[-1].stream_version + 1

    async def tail(
        self,
        from_position: int = 0,
        *,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        heartbeat: float | None = None,
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Follow the log from `from_position` (inclusive), live, forever: pages of events as they
        become readable, in global order, never skipping one (`read_all` then `wait_for_events`).

        With `heartbeat`, an empty page comes after that many seconds without events (a live
        HTTP stream's keep-alive). Stop by leaving the `async for` or cancelling the task.
        """
        position = from_position  # the first position not yet scanned
        idle = 0.0
        while True:
            head = await self.head_position()
            if head >= position:
                page = await self.read_all(
                    position,
                    to_position=head,
                    categories=categories,
                    event_types=event_types,
                    limit=batch_size,
                )
                # A short page scanned everything up to the head, also what the filters skipped.
                position = page[-1].global_position + 1 if len(page) == batch_size else head + 1
                if page:
                    idle = 0.0
                    yield page
                continue
            wait = 1.0 if heartbeat is None else min(1.0, heartbeat - idle)
            if not await self.wait_for_events(position - 1, wait):
                idle += wait
                if heartbeat is not None and idle >= heartbeat:
                    idle = 0.0
                    yield []

    @abc.abstractmethod
    async def head_position(self) -> int:
        """The highest global position that is safe to read (0 for an empty log)."""

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Wait until the readable head passes `after_position` (True) or `timeout` seconds pass
        (False), without blocking the event loop. Cancelling the waiting task is safe."""
        return await self._watch.wait(after_position, timeout)

    @abc.abstractmethod
    async def stream_version(self, stream: str) -> int | None:
        """The version of the stream's last event, or None when the stream does not exist."""

    @abc.abstractmethod
    async def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]: ...

    @abc.abstractmethod
    async def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]: ...

    @abc.abstractmethod
    async def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        """Every event whose metadata carries this correlation id, in global order."""

    # -- checkpoints and snapshots -------------------------------------------------------------

    @abc.abstractmethod
    async def load_checkpoint(self, name: str) -> int | None: ...

    @abc.abstractmethod
    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    @abc.abstractmethod
    async def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        """The latest snapshot of `stream` with that schema version, at or before a version."""

    @abc.abstractmethod
    async def delete_snapshots(self, stream: str | None = None) -> int:
        """Drop cached snapshots (all of them, or one stream's); returns how many."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Release connections and threads. The store cannot be used afterwards."""
        await self._watch.close()

    async def __aenter__(self) -> AsyncEventStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class HeadWatch:
    """One watcher of a store's readable head, shared by every task in `wait_for_events`.

    While anyone waits, one background task looks at the head (`probe`), remembers the highest it
    saw, and wakes the waiters it satisfies. Between looks it pauses (`pause`); `poke()` ends the
    pause at once (a new waiter, an append through this store, a notification from the server).
    This default pauses WAIT_POLL_INTERVAL seconds, like the synchronous store's polling wait; a
    backend that can push overrides `pause`. A failed look (the database is gone) is raised to the
    waiters that were waiting for it; the next look tries again.
    """

    def __init__(self, probe: Callable[[], Awaitable[int]], *, interval: float = WAIT_POLL_INTERVAL) -> None:
        self._probe = probe
        self.interval = interval
        self.known = -1  # the highest readable head seen (-1: none yet)
        self._looks = 0  # how many looks have finished
        self._failure: tuple[int, BaseException] | None = None  # (look number, error) of the last failed look
        self._changed = asyncio.Condition()
        self._poked = asyncio.Event()
        self._waiters = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def poke(self) -> None:
        """Something may have changed: look now (no-op while nobody waits)."""
        self._poked.set()

    async def wait(self, after_position: int, timeout: float) -> bool:
        if self.known > after_position:
            return True
        if self._closed:
            raise ChronikError("the store is closed")
        start = self._looks
        self._waiters += 1
        self.poke()  # the first look is for this waiter, now
        if self._task is None:
            # In a context of its own: not inside the unit of work of the task that happened to
            # start it (its looks must see only what is committed).
            self._task = asyncio.create_task(self._run(), name="chronik-head-watch", context=Context())
        try:
            async with asyncio.timeout(max(0.0, timeout)), self._changed:
                await self._changed.wait_for(lambda: self.known > after_position or self._failed_since(start))
        except TimeoutError:
            return self.known > after_position
        finally:
            self._waiters -= 1
        if self.known > after_position:
            return True
        assert self._failure is not None
        raise self._failure[1]

    def _failed_since(self, look: int) -> bool:
        return self._failure is not None and self._failure[0] > look

    async def _run(self) -> None:
        try:
            while self._waiters > 0 and not self._closed:
                self._poked.clear()
                rose = False
                try:
                    head = await self._probe()
                except Exception as error:
                    self._failure = (self._looks + 1, error)
                else:
                    rose = head > self.known
                    self.known = max(self.known, head)
                self._looks += 1
                async with self._changed:
                    self._changed.notify_all()
                if self._waiters > 0:
                    await self.pause(rose)
        finally:
            self._task = None  # no await between the loop's last test and this: no waiter is missed

    async def pause(self, rose: bool) -> None:
        """Wait before the next look: `interval` seconds, or until poked."""
        await self.wait_poked(self.interval)

    async def wait_poked(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a poke; True if poked."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._poked.wait()
                return True
        return False

    async def close(self) -> None:
        """Stop looking; tasks still waiting get `ChronikError` (the store is closed)."""
        self._closed = True
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._failure = (self._looks + 2**62, ChronikError("the store was closed while waiting for events"))
        async with self._changed:
            self._changed.notify_all()
