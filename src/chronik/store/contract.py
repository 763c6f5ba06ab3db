"""The store contract: what every backend (memory, SQLite, PostgreSQL, ...) promises.

The guarantees, in one place:

* **Append-only.** Events are never updated or deleted by normal operation.
* **Per-stream order.** A stream's events have versions 0, 1, 2, ... with no gaps. The database
  enforces it (a unique constraint on stream and version), not only Python.
* **Every stream in order in the global log.** Within one stream, global order equals version
  order: a reader of `read_all` (and every subscription, group and projection built on it) sees
  each stream's versions 0, 1, 2, ... in that order, whatever the expectation mode (`ANY`,
  `STREAM_EXISTS`, `NO_STREAM`, exact), for single appends, batches, `append_many` and units of
  work that append to several streams. A unit of work that cannot keep it (PostgreSQL: another
  writer that took its place in the global order later appended first to a stream this unit of
  work then appends to) raises `WriteOrderConflict` and writes nothing; `uow.lock_streams` first
  (as `append_many` does) rules that out. Proven by `tests/contract/test_stream_order.py` and the
  fault-history checker (`tests/history/`).
* **Expected version.** `append` checks the stream's version against `expected_version`
  (`ANY`, `NO_STREAM`, `STREAM_EXISTS` or an exact version) in the same transaction as the
  insert; a mismatch raises `WrongExpectedVersion` and writes nothing.
* **All or nothing.** A batch, and every append in one unit of work, commit together or not at all.
* **Idempotent retry.** Appending event ids that are already recorded, in the same order, at the
  place this append would put them (for an exact version: right after it; for `NO_STREAM`: at the
  start; for `ANY`/`STREAM_EXISTS`: anywhere in that stream) returns the original result and writes
  nothing. The same id anywhere else raises `DuplicateEventId`.
* **Global order.** `global_position` is strictly increasing in the order events become readable:
  once a reader has seen position P, no event with a position below P will ever appear. Positions
  need not be contiguous (PostgreSQL's are not).
* **Time.** `recorded_at` comes from the store's clock and never decreases along the global order.
* **Checked input.** Names, sizes and JSON are checked before anything is written (data and
  metadata are JSON objects without NaN or infinity; metadata holds no U+0000, which PostgreSQL
  cannot query), the same on every backend, so a log can move between them.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

import msgspec

from chronik.clock import Clock, system_clock
from chronik.errors import DuplicateEventId, TransactionAborted, WrongExpectedVersion
from chronik.events.envelope import (
    ANY,
    DEFAULT_MAX_EVENT_BYTES,
    NO_STREAM,
    STREAM_EXISTS,
    EncodedEvent,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    check_expected_version,
    check_stream_name,
    encode_new_event,
    new_event_id,
)

log = logging.getLogger("chronik.store")

EventPayload = tuple[int, str, int, str]
"""(stream_version, event type, schema_version, json_data): one event as hydration sees it."""

AppendHook = Callable[["UnitOfWork", Sequence[RecordedEvent]], None]
"""Called inside the unit of work after each append, with the events just written (see `add_append_hook`)."""

AppendObserver = Callable[[str, int, float], None]
"""Told of each append a store object makes: (outcome, events written, seconds); see `add_append_observer`."""

ABORTED = "an earlier step of this unit of work failed; it can only be rolled back"
WAIT_POLL_INTERVAL = 0.005  # seconds between looks at the head in the default `wait_for_events`


class AppendResult(msgspec.Struct, frozen=True):
    """Where an append put its events.

    `stream_version` is the version of the stream's last event after the append: pass it as the
    next `expected_version`. `global_positions` has one position per event, in order (empty for an
    empty batch). `already_recorded` is True when the append was an acknowledged retry.
    """

    stream: str
    stream_version: int | None
    global_positions: tuple[int, ...]
    already_recorded: bool = False

    @property
    def last_position(self) -> int | None:
        return self.global_positions[-1] if self.global_positions else None


class AppendRequest(msgspec.Struct, frozen=True):
    """One stream's part of an atomic multi-stream append."""

    stream: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = ANY


class StreamInfo(msgspec.Struct, frozen=True):
    stream: str
    category: str
    version: int
    event_count: int
    first_recorded_at: datetime
    last_recorded_at: datetime


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Cached state of one stream's aggregate at one version. A cache only: deleting it changes no result.

    `schema_version` is the aggregate class's snapshot schema; a loader ignores snapshots of any other.
    """

    stream: str
    stream_version: int
    aggregate_type: str
    schema_version: int
    json_state: str
    recorded_at: datetime


class ExistingEvent(msgspec.Struct, frozen=True):
    """Where an event id is already recorded; used to tell a retry from a conflict."""

    event_id: uuid.UUID
    stream: str
    stream_version: int
    global_position: int


def resolve_retry(
    stream: str,
    batch: Sequence[EncodedEvent],
    expected: ExpectedVersion,
    existing: Sequence[ExistingEvent],
) -> AppendResult | None:
    """Decide whether an append whose ids are (partly) recorded already is an acknowledged retry.

    Returns the original result when every id of the batch is recorded, in batch order, at
    consecutive versions of this stream starting where `expected` allows; None when none of the
    ids is recorded (not a retry); raises `DuplicateEventId` otherwise.
    """
    if not existing:
        return None
    found = {item.event_id: item for item in existing}
    first = found.get(batch[0].event_id)
    for index, event in enumerate(batch):
        item = found.get(event.event_id)
        if item is None or item.stream != stream or first is None or first.stream != stream:
            clash = item or next(iter(found.values()))
            raise DuplicateEventId(clash.event_id, stream, clash.stream, clash.stream_version)
        if item.stream_version != first.stream_version + index:
            raise DuplicateEventId(item.event_id, stream, item.stream, item.stream_version)
    assert first is not None
    start_ok = (
        expected in (ANY, STREAM_EXISTS)
        or (expected is NO_STREAM and first.stream_version == 0)
        or (isinstance(expected, int) and first.stream_version == expected + 1)
    )
    if not start_ok:
        raise DuplicateEventId(first.event_id, stream, first.stream, first.stream_version)
    positions = tuple(found[event.event_id].global_position for event in batch)
    return AppendResult(stream, first.stream_version + len(batch) - 1, positions, already_recorded=True)


def check_expectation(stream: str, expected: ExpectedVersion, actual: int | None) -> bool:
    """True when a stream at version `actual` (None: no stream) satisfies `expected`."""
    if expected is ANY:
        return True
    if expected is NO_STREAM:
        return actual is None
    if expected is STREAM_EXISTS:
        return actual is not None
    return actual == expected


def expectation_failed(stream: str, expected: ExpectedVersion, actual: int | None) -> WrongExpectedVersion:
    return WrongExpectedVersion(stream, expected, actual)


def encode_batch(events: Sequence[NewEvent] | NewEvent, max_event_bytes: int) -> list[EncodedEvent]:
    """Check and encode one append's events (names, JSON, sizes), before anything is written.

    One business operation: unless the writer said otherwise, the events of one append share a
    correlation id, the first event's id. The same id twice in one batch is refused.
    """
    if isinstance(events, NewEvent):
        events = [events]
    if not events:
        return []
    first_id = events[0].event_id or new_event_id()
    defaults = {"correlation_id": str(first_id)}
    default_json = msgspec.json.encode(defaults).decode()
    batch = [
        encode_new_event(
            event,
            max_event_bytes=max_event_bytes,
            default_metadata=defaults,
            default_json_metadata=default_json,
            event_id=first_id if index == 0 else None,
        )
        for index, event in enumerate(events)
    ]
    seen: set[uuid.UUID] = set()
    for event in batch:
        if event.event_id in seen:
            raise DuplicateEventId(event.event_id, "(this batch)", "(this batch)", -1)
        seen.add(event.event_id)
    return batch


class UnitOfWork(abc.ABC):
    """One database transaction: appends, checkpoints and (on SQL stores) read-model writes.

    Everything done through one unit of work commits together or not at all. If a step raises,
    the unit of work can only be rolled back. Backends add what their database offers (for
    example the SQL connection itself, for projections writing their tables).
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._aborted = False
        self._pending: list[tuple[int, float]] = []  # (events, start) of appends to tell observers of

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        if not self.store._append_observers:
            return self._append(stream, events, expected_version)
        started = time.perf_counter()
        try:
            result = self._append(stream, events, expected_version)
        except WrongExpectedVersion:
            self._tell("conflict", 0, started)
            raise
        except BaseException:
            self._tell("rejected", 0, started)
            raise
        self._pending.append((0 if result.already_recorded else len(result.global_positions), started))
        return result

    def _append(
        self, stream: str, events: Sequence[NewEvent] | NewEvent, expected_version: ExpectedVersion
    ) -> AppendResult:
        stream = check_stream_name(stream)
        expected = check_expected_version(expected_version)
        batch = self.store.encode_batch(events)
        try:
            result = self._append_encoded(stream, batch, expected)
            hooks = self.store._append_hooks
            if hooks and result.global_positions and not result.already_recorded:
                recorded = self._recorded_events(result)
                for hook in hooks:
                    hook(self, recorded)
            return result
        except BaseException:
            self._aborted = True
            raise

    def lock_streams(self, streams: Sequence[str]) -> None:
        """Declare, before the first append, the streams this unit of work will append to.

        Within one stream, global order equals version order. A backend whose units of work take
        their place in the global order at their first write (PostgreSQL) locks these streams
        first, so that appending to any of them later in this unit of work cannot meet a
        `WriteOrderConflict`. Where one write lock covers the whole store (SQLite, memory) there
        is nothing to do. `append_many` calls it. The streams are locked in name order; a unit of
        work that appends to several streams without declaring them should append in name order
        too, or two such units of work can deadlock (a retryable `StoreUnavailable`).
        """
        names = sorted({check_stream_name(stream) for stream in streams})
        try:
            self._lock_streams(names)
        except BaseException:
            self._aborted = True
            raise

    def _lock_streams(self, streams: list[str]) -> None:  # noqa: B027 - nothing to do by default
        """Lock `streams` (checked, sorted, distinct) for this unit of work's appends."""

    def save_checkpoint(self, name: str, position: int) -> None:
        """Record that the named reader has handled everything up to `position`, in this transaction."""
        try:
            self._save_checkpoint(name, position)
        except BaseException:
            self._aborted = True
            raise

    def finished(self, *, committed: bool) -> None:
        """The backend's `transaction()` calls this once it has committed or rolled back: the append
        observers hear of this unit of work's appends as "ok", or as "rolled_back" (nothing kept)."""
        pending, self._pending = self._pending, []
        for events, started in pending:
            self._tell("ok" if committed else "rolled_back", events if committed else 0, started)

    def _tell(self, outcome: str, events: int, started: float) -> None:
        seconds = time.perf_counter() - started
        for observer in self.store._append_observers:
            try:
                observer(outcome, events, seconds)
            except Exception:  # counting must never fail an append, committed or not
                log.exception("append observer %r failed", observer)

    def ensure_not_aborted(self) -> None:
        if self._aborted:
            raise TransactionAborted(ABORTED)

    @abc.abstractmethod
    def _append_encoded(
        self, stream: str, batch: Sequence[EncodedEvent], expected: ExpectedVersion
    ) -> AppendResult: ...

    @abc.abstractmethod
    def _save_checkpoint(self, name: str, position: int) -> None: ...

    def _recorded_events(self, result: AppendResult) -> list[RecordedEvent]:
        """The events an append just wrote, as seen inside this unit of work (for append hooks).

        This default reads them back through the store, which is right when the store's reads on
        this thread see this transaction's writes (memory, SQLite). A backend whose reads use
        another connection overrides it to read through the transaction's own connection.
        """
        first, last = result.global_positions[0], result.global_positions[-1]
        return [
            event for event in self.store.read_all(first, to_position=last) if event.stream == result.stream
        ]


class EventStore(abc.ABC):
    """The contract every backend implements. Open one with `chronik.open_store(url)`."""

    url: str
    _append_hooks: tuple[AppendHook, ...] = ()
    _append_observers: tuple[AppendObserver, ...] = ()

    def __init__(self, *, clock: Clock | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.clock: Clock = clock or system_clock
        self.max_event_bytes = max_event_bytes

    # -- writing -----------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append a batch to one stream, all or nothing, if the stream is at `expected_version`."""
        with self.transaction() as uow:
            return uow.append(stream, events, expected_version)

    def append_many(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """Append to several streams atomically, each with its own expectation."""
        requests = list(requests)
        for request in requests:  # check every input before opening the transaction
            check_stream_name(request.stream)
            check_expected_version(request.expected_version)
            self.encode_batch(request.events)
        with self.transaction() as uow:
            uow.lock_streams([r.stream for r in requests])
            return [uow.append(r.stream, r.events, r.expected_version) for r in requests]

    def add_append_hook(self, hook: AppendHook) -> Callable[[], None]:
        """Call `hook(uow, recorded_events)` inside the unit of work after every append; returns a remover.

        The hook runs in the append's own transaction, before it commits: whatever it writes
        through the unit of work commits with the events, and if it raises, the append is rolled
        back and the error reaches the writer. Inline projections use it. An acknowledged retry
        and an empty batch write nothing and call no hook. The store knows nothing about what the
        hooks do (it must not import the layers above it).
        """
        self._append_hooks = (*self._append_hooks, hook)

        def remove() -> None:
            self._append_hooks = tuple(h for h in self._append_hooks if h is not hook)

        return remove

    def add_append_observer(self, observer: AppendObserver) -> Callable[[], None]:
        """Tell `observer(outcome, events, seconds)` of every append made through this store object;
        returns a remover. For metrics: unlike an append hook it reads nothing back and writes nothing.

        Outcomes: "ok" once the append's unit of work has committed (`events` written: 0 for an
        acknowledged retry), "rolled_back" when that unit of work was rolled back after it,
        "conflict" (`WrongExpectedVersion`) and "rejected" (any other error). `seconds` runs from
        the append's start to its outcome, the commit included. Observers are called on the
        writer's thread, some while the store holds its write lock: they must be quick and must
        not use the store.
        """
        self._append_observers = (*self._append_observers, observer)

        def remove() -> None:
            self._append_observers = tuple(o for o in self._append_observers if o is not observer)

        return remove

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[UnitOfWork]:
        """Open a unit of work: it commits when the block ends, and rolls back if it raises."""

    def encode_batch(self, events: Sequence[NewEvent] | NewEvent) -> list[EncodedEvent]:
        return encode_batch(events, self.max_event_bytes)

    # -- reading -----------------------------------------------------------------------------

    @abc.abstractmethod
    def read_stream(
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
        """A stream's events in version order (or reversed), within the given bounds.

        `from_version`/`to_version` are inclusive. `recorded_until` keeps what the store knew at
        that moment; `occurred_until` keeps events whose business time is at or before it.
        Raises `StreamNotFound` when the stream has no events at all.
        """

    def read_stream_payloads(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[EventPayload]:
        """Just what hydration needs, in version order: (stream_version, type, schema_version, json_data).

        Replaying an aggregate never looks at ids, positions or times, and building full
        `RecordedEvent`s (a UUID and two datetimes each) costs more than decoding the data itself,
        so backends answer this with a narrower query. Raises `StreamNotFound` like `read_stream`.
        """
        return [
            (event.stream_version, event.type, event.schema_version, event.json_data)
            for event in self.read_stream(
                stream,
                from_version=from_version,
                to_version=to_version,
                recorded_until=recorded_until,
                occurred_until=occurred_until,
            )
        ]

    @abc.abstractmethod
    def read_all(
        self,
        from_position: int = 0,
        *,
        to_position: int | None = None,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The whole log from `from_position` (inclusive) in global order, optionally filtered.

        Only events that are safe to read are returned: a later call never returns an event with
        a position below one already returned. `to_position` is inclusive.
        """

    def iter_all(
        self,
        from_position: int = 0,
        *,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        batch_size: int = 1000,
    ) -> Iterator[RecordedEvent]:
        """Page through the log up to its current head, `batch_size` events at a time."""
        head = self.head_position()
        position = from_position
        while position <= head:
            page = self.read_all(
                position, to_position=head, categories=categories, event_types=event_types, limit=batch_size
            )
            if not page:
                return
            yield from page
            position = page[-1].global_position + 1

    @abc.abstractmethod
    def head_position(self) -> int:
        """The highest global position that is safe to read (0 for an empty log)."""

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Block until the readable head passes `after_position` (True) or `timeout` seconds pass (False).

        A tailing reader calls it between `read_all` calls instead of sleeping. This default polls
        `head_position` every few milliseconds; a backend that can push (PostgreSQL's
        LISTEN/NOTIFY) overrides it.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.head_position() > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(WAIT_POLL_INTERVAL, remaining))

    @abc.abstractmethod
    def stream_version(self, stream: str) -> int | None:
        """The version of the stream's last event, or None when the stream does not exist."""

    @abc.abstractmethod
    def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]: ...

    @abc.abstractmethod
    def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]: ...

    @abc.abstractmethod
    def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        """Every event whose metadata carries this correlation id, in global order."""

    # -- checkpoints and snapshots -------------------------------------------------------------

    @abc.abstractmethod
    def load_checkpoint(self, name: str) -> int | None: ...

    @abc.abstractmethod
    def save_snapshot(self, snapshot: Snapshot) -> None: ...

    @abc.abstractmethod
    def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        """The latest snapshot of `stream` with that schema version, at or before a version."""

    @abc.abstractmethod
    def delete_snapshots(self, stream: str | None = None) -> int:
        """Drop cached snapshots (all of them, or one stream's); returns how many."""

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - backends without resources need not override
        """Release connections. The store cannot be used afterwards."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
