"""The asyncio repository: `load` (now or as of the past, from snapshots), `save`, `execute`.

The twin of `chronik.domain.Repository`, on an `AsyncEventStore`. Everything but the store's I/O
is the synchronous repository's own code (`RepositoryBase`): the same dispatch table and replay
loop, the same checks, the same expectation on save, the same snapshot decision, the same retry
rule. Replaying runs on the event loop: it is CPU work without I/O (10,000 events in about 10 ms,
`bench/core.py`); an application that hydrates very long streams keeps them short with snapshots.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from chronik.aio.store import AsyncEventStore
from chronik.domain.aggregate import Aggregate
from chronik.domain.repository import AggregateT, RepositoryBase
from chronik.domain.snapshots import SnapshotPolicy, snapshot_failed, snapshot_of
from chronik.errors import AggregateNotFound, StreamNotFound, WrongExpectedVersion
from chronik.events.codec import EventCodec
from chronik.events.envelope import RecordedEvent
from chronik.store.contract import AppendResult, EventPayload

Decision = Iterable[Aggregate[Any]] | None
Command = Callable[[AggregateT], Decision | Awaitable[Decision]]
"""Decides through the aggregate; may be a coroutine function; may return the aggregates it read."""


class Repository(RepositoryBase):
    """Loads and saves aggregates of any class in one asyncio store, through one codec."""

    def __init__(
        self,
        store: AsyncEventStore,
        codec: EventCodec | None = None,
        *,
        snapshot_policies: Mapping[type[Aggregate[Any]], SnapshotPolicy] | None = None,
    ) -> None:
        super().__init__(codec, snapshot_policies=snapshot_policies)
        self.store = store

    async def load(
        self,
        aggregate_class: type[AggregateT],
        id: str,
        *,
        version: int | None = None,
        recorded_at: datetime | None = None,
        occurred_at: datetime | None = None,
        use_snapshots: bool = True,
    ) -> AggregateT:
        """The aggregate now, or as of the past: see `chronik.domain.Repository.load`."""
        self._check_time_travel(version, recorded_at, occurred_at)
        stream = aggregate_class.stream_name(id)
        if occurred_at is not None:
            occurred = await self._read(
                stream, to_version=version, recorded_until=recorded_at, occurred_until=occurred_at
            )
            return self._as_occurred(aggregate_class(id), occurred, occurred_at)

        target = version
        if recorded_at is not None:
            last = await self._read(
                stream, from_version=version, recorded_until=recorded_at, backwards=True, limit=1
            )
            target = self._recorded_target(stream, last, recorded_at)

        restored = await self._restore(aggregate_class, id, target) if use_snapshots else None
        if restored is None:
            aggregate = aggregate_class(id)
            events = await self._read_payloads(stream, None, target)
        elif target == restored.version:
            aggregate, events = restored, []
        else:
            aggregate = restored
            events = await self._read_payloads(stream, restored.version + 1, target)
        return self._loaded(aggregate, events, target)

    async def _restore(self, aggregate_class: type[AggregateT], id: str, target: int | None) -> Any:
        reader = self._snapshot_reader(aggregate_class)
        stream = aggregate_class.stream_name(id)
        try:
            snapshot = await self.store.load_snapshot(
                stream, schema_version=aggregate_class.snapshot_schema_version, at_or_before=target
            )
        except Exception as error:
            reader.unreadable(stream, error)
            return None
        return reader.restore(id, snapshot)

    async def _read(self, stream: str, **bounds: Any) -> list[RecordedEvent]:
        try:
            return await self.store.read_stream(stream, **bounds)
        except StreamNotFound:
            raise AggregateNotFound(stream) from None

    async def _read_payloads(
        self, stream: str, from_version: int | None, to_version: int | None
    ) -> list[EventPayload]:
        try:
            return await self.store.read_stream_payloads(
                stream, from_version=from_version, to_version=to_version
            )
        except StreamNotFound:
            raise AggregateNotFound(stream) from None

    async def save(
        self,
        aggregate: Aggregate[Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        depends_on: Iterable[Aggregate[Any]] = (),
    ) -> AppendResult:
        """Append the pending events, expecting the version loaded: see `chronik.domain.Repository.save`."""
        events, expected = self._pending_events(aggregate, metadata)
        read = list(depends_on)
        if not read:
            result = await self.store.append(aggregate.stream, events, expected)
        else:
            async with self.store.transaction() as uow:
                await uow.lock_streams([aggregate.stream, *(other.stream for other in read)])
                for other in read:
                    await uow.append(other.stream, [], self._expected_of(other))
                result = await uow.append(aggregate.stream, events, expected)
        if self._saved(aggregate, len(events), result):
            await self._take_snapshot(aggregate)
        return result

    async def _take_snapshot(self, aggregate: Aggregate[Any]) -> None:
        try:
            snapshot = snapshot_of(aggregate, self.store.clock())
            if snapshot is not None:
                await self.store.save_snapshot(snapshot)
        except Exception as error:
            snapshot_failed(aggregate, error)

    async def execute(
        self,
        aggregate_class: type[AggregateT],
        id: str,
        command: Command[AggregateT],
        *,
        metadata: Mapping[str, Any] | None = None,
        create: bool = False,
        attempts: int = 5,
        on_conflict: Callable[[WrongExpectedVersion, int], object] | None = None,
    ) -> tuple[AggregateT, AppendResult]:
        """Load, run `command`, save; on a concurrent write, again on fresh state (see
        `chronik.domain.Repository.execute`). `command` may be a coroutine function."""
        self._check_attempts(attempts)
        for attempt in range(1, attempts + 1):
            try:
                aggregate = await self.load(aggregate_class, id)
            except AggregateNotFound:
                if not create:
                    raise
                aggregate = aggregate_class(id)
            decided = command(aggregate)
            read = (await decided if inspect.isawaitable(decided) else decided) or ()
            try:
                return aggregate, await self.save(aggregate, metadata=metadata, depends_on=read)
            except WrongExpectedVersion as conflict:
                self._conflicted(conflict, id, attempt, attempts, on_conflict)
        raise AssertionError("unreachable")  # pragma: no cover
