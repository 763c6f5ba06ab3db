"""`memory://`: the whole store in one process's memory, for tests and experiments.

It keeps every promise of the contract within one process: a unit of work holds the store's
lock from start to end (so, like SQLite, writers take turns and commit order is position order),
and a rollback undoes exactly what the unit of work wrote. Nothing survives the process.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime

from chronik.clock import Clock
from chronik.errors import ChronikError, StreamNotFound, WrongExpectedVersion
from chronik.events.envelope import (
    ANY,
    DEFAULT_MAX_EVENT_BYTES,
    STREAM_EXISTS,
    EncodedEvent,
    ExpectedVersion,
    RecordedEvent,
    category_of,
    check_stream_name,
)
from chronik.store.contract import (
    AppendResult,
    EventStore,
    ExistingEvent,
    Snapshot,
    StreamInfo,
    UnitOfWork,
    check_expectation,
    resolve_retry,
)


class MemoryUnitOfWork(UnitOfWork):
    store: MemoryStore

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.log_length_at_start = len(store._log)
        self.checkpoints_at_start = dict(store._checkpoints)

    def _append_encoded(
        self, stream: str, batch: Sequence[EncodedEvent], expected: ExpectedVersion
    ) -> AppendResult:
        store = self.store
        positions = store._streams.get(stream)
        actual = len(positions) - 1 if positions else None
        if not batch:
            if not check_expectation(stream, expected, actual):
                raise WrongExpectedVersion(stream, expected, actual)
            return AppendResult(stream, actual, ())
        if not check_expectation(stream, expected, actual) or (
            expected in (ANY, STREAM_EXISTS) and batch[0].event_id in store._by_id
        ):
            retry = resolve_retry(stream, batch, expected, store.find_events([e.event_id for e in batch]))
            if retry is not None:
                return retry
            raise WrongExpectedVersion(stream, expected, actual)
        if any(event.event_id in store._by_id for event in batch):
            # Recorded elsewhere (a retry to the right place was recognized above): this raises.
            resolve_retry(stream, batch, expected, store.find_events([e.event_id for e in batch]))
        now = store.clock()
        last = store._log[-1].recorded_at if store._log else None
        recorded_at = now if last is None or now > last else last  # never decreasing along the log
        first_version = -1 if actual is None else actual
        start = len(store._log) + 1
        for index, event in enumerate(batch):
            recorded = RecordedEvent(
                event_id=event.event_id,
                stream=stream,
                stream_version=first_version + 1 + index,
                global_position=start + index,
                type=event.type,
                json_data=event.json_data,
                json_metadata=event.json_metadata,
                schema_version=event.schema_version,
                recorded_at=recorded_at,
                occurred_at=event.occurred_at or recorded_at,
            )
            store._log.append(recorded)
            store._by_id[event.event_id] = recorded
            store._streams.setdefault(stream, []).append(recorded.global_position)
        return AppendResult(stream, first_version + len(batch), tuple(range(start, start + len(batch))))

    def _save_checkpoint(self, name: str, position: int) -> None:
        self.store._checkpoints[name] = position

    def rollback(self) -> None:
        store = self.store
        for recorded in store._log[self.log_length_at_start :]:
            del store._by_id[recorded.event_id]
            positions = store._streams[recorded.stream]
            positions.pop()
            if not positions:
                del store._streams[recorded.stream]
        del store._log[self.log_length_at_start :]
        store._checkpoints = self.checkpoints_at_start


class MemoryStore(EventStore):
    def __init__(self, *, clock: Clock | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(clock=clock, max_event_bytes=max_event_bytes)
        self.url = "memory://"
        self._lock = threading.RLock()
        self._log: list[RecordedEvent] = []  # index = global_position - 1
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._streams: dict[str, list[int]] = {}  # stream -> global positions, index = stream version
        self._checkpoints: dict[str, int] = {}
        self._snapshots: dict[tuple[str, int], dict[int, Snapshot]] = {}
        self._in_transaction = threading.local()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[MemoryUnitOfWork]:
        if getattr(self._in_transaction, "active", False):
            raise ChronikError("a unit of work is already open on this thread; units of work do not nest")
        with self._lock:
            self._in_transaction.active = True
            uow = MemoryUnitOfWork(self)
            try:
                yield uow
                uow.ensure_not_aborted()
            except BaseException:
                uow.rollback()
                uow.finished(committed=False)
                raise
            finally:
                self._in_transaction.active = False
            uow.finished(committed=True)

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
        check_stream_name(stream)
        with self._lock:
            positions = self._streams.get(stream)
            if not positions:
                raise StreamNotFound(stream)
            events = [self._log[position - 1] for position in positions]
        low, high = (to_version, from_version) if backwards else (from_version, to_version)
        selected = [
            event
            for event in events
            if (low is None or event.stream_version >= low)
            and (high is None or event.stream_version <= high)
            and (recorded_until is None or event.recorded_at <= recorded_until)
            and (occurred_until is None or event.occurred_at <= occurred_until)
        ]
        if backwards:
            selected.reverse()
        return selected if limit is None else selected[: max(0, limit)]

    def read_all(
        self,
        from_position: int = 0,
        *,
        to_position: int | None = None,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        with self._lock:
            window = self._log[max(0, from_position - 1) : to_position]
        wanted_categories = set(categories) if categories else None
        wanted_types = set(event_types) if event_types else None
        selected = [
            event
            for event in window
            if (wanted_categories is None or category_of(event.stream) in wanted_categories)
            and (wanted_types is None or event.type in wanted_types)
        ]
        return selected if limit is None else selected[: max(0, limit)]

    def head_position(self) -> int:
        return len(self._log)

    def stream_version(self, stream: str) -> int | None:
        check_stream_name(stream)
        positions = self._streams.get(stream)
        return len(positions) - 1 if positions else None

    def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        with self._lock:
            names = sorted(name for name in self._streams if name.startswith(prefix))[: max(0, limit)]
            infos = []
            for name in names:
                positions = self._streams[name]
                first, last = self._log[positions[0] - 1], self._log[positions[-1] - 1]
                infos.append(
                    StreamInfo(
                        name,
                        category_of(name),
                        len(positions) - 1,
                        len(positions),
                        first.recorded_at,
                        last.recorded_at,
                    )
                )
            return infos

    def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]:
        found = []
        for event_id in event_ids:
            recorded = self._by_id.get(event_id)
            if recorded is not None:
                found.append(
                    ExistingEvent(
                        event_id, recorded.stream, recorded.stream_version, recorded.global_position
                    )
                )
        return found

    def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        with self._lock:
            log = list(self._log)
        return [event for event in log if event.correlation_id == correlation_id]

    def load_checkpoint(self, name: str) -> int | None:
        return self._checkpoints.get(name)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshots.setdefault((snapshot.stream, snapshot.schema_version), {})[
                snapshot.stream_version
            ] = snapshot

    def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        with self._lock:
            by_version = self._snapshots.get((stream, schema_version), {})
            usable = [v for v in by_version if at_or_before is None or v <= at_or_before]
            return by_version[max(usable)] if usable else None

    def delete_snapshots(self, stream: str | None = None) -> int:
        with self._lock:
            keys = [key for key in self._snapshots if stream is None or key[0] == stream]
            count = sum(len(self._snapshots[key]) for key in keys)
            for key in keys:
                del self._snapshots[key]
            return count
