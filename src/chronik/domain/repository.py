"""The repository: loads aggregates from their streams (now or as of the past) and saves what they decided.

Optimistic concurrency is the whole locking story: `save` appends with the version the aggregate
was loaded at as the expected version, so a writer that decided on stale state gets
`WrongExpectedVersion` and nothing is written. `execute` turns that into a safe loop: reload the
fresh state, run the decision again, save again.

Hydration is the hot path. Each aggregate class gets a dispatch table from the stored
(event type, schema version) to (JSON decoder, applier), filled on first sight of each kind of
event, so the loop per event is one dict lookup, one msgspec decode and one call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

from chronik.domain.aggregate import Aggregate, Applier, NoApplier
from chronik.domain.snapshots import SnapshotPolicy, SnapshotReader, policy_for, take_snapshot
from chronik.errors import (
    AggregateNotFound,
    EventDataInvalid,
    HistoricalAggregate,
    InvalidInput,
    StreamNotFound,
    WrongExpectedVersion,
)
from chronik.events.codec import DECODING_ERRORS, EventCodec, JsonDecoder
from chronik.events.envelope import NO_STREAM, ExpectedVersion, NewEvent, RecordedEvent
from chronik.store.contract import AppendResult, EventPayload, EventStore

AggregateT = TypeVar("AggregateT", bound=Aggregate[Any])

logger: Final = logging.getLogger("chronik.repository")

_DispatchTable = dict[tuple[str, int], tuple[JsonDecoder, Applier]]


def register_events(codec: EventCodec, aggregate_class: type[Aggregate[Any]]) -> None:
    """Register with the codec every event class the aggregate has an applier for (if not yet)."""
    for event_class in aggregate_class.appliers:
        if not codec.is_registered(event_class):
            codec.register(event_class)


class RepositoryBase:
    """What the synchronous `Repository` and its asyncio twin (`chronik.aio.Repository`) share:
    everything but the store's I/O. The dispatch table and the replay (the hot loop), the checks of
    a load's time-travel arguments, the events a save appends and its expectation, the snapshot
    decision, and the retry rule of `execute`.
    """

    def __init__(
        self,
        codec: EventCodec | None = None,
        *,
        snapshot_policies: Mapping[type[Aggregate[Any]], SnapshotPolicy] | None = None,
    ) -> None:
        self.codec = codec or EventCodec()
        self._policies: dict[type[Aggregate[Any]], SnapshotPolicy] = dict(snapshot_policies or {})
        self._dispatch: dict[type[Aggregate[Any]], _DispatchTable] = {}
        self._snapshot_readers: dict[type[Aggregate[Any]], SnapshotReader] = {}

    @staticmethod
    def _check_time_travel(
        version: int | None, recorded_at: datetime | None, occurred_at: datetime | None
    ) -> None:
        if version is not None and (not isinstance(version, int) or version < 0):
            raise InvalidInput(f"version must be an integer >= 0, not {version!r}")

    def _as_occurred(
        self, aggregate: AggregateT, occurred: list[RecordedEvent], occurred_at: datetime
    ) -> AggregateT:
        """The aggregate replayed from the events that occurred by `occurred_at` (read-only)."""
        self._replay(aggregate, [(e.stream_version, e.type, e.schema_version, e.json_data) for e in occurred])
        if aggregate.version is None:
            raise AggregateNotFound(
                aggregate.stream, f"has no events that occurred at or before {occurred_at}"
            )
        aggregate.read_only = True
        return aggregate

    @staticmethod
    def _recorded_target(stream: str, last: list[RecordedEvent], recorded_at: datetime) -> int:
        """The version the store had reached at `recorded_at` (the last event recorded by then)."""
        if not last:
            raise AggregateNotFound(stream, f"did not exist yet at {recorded_at}")
        return last[0].stream_version

    def _loaded(self, aggregate: AggregateT, events: list[EventPayload], target: int | None) -> AggregateT:
        """Replay the events read after the snapshot (or from the start); a view of the past is read-only."""
        self._replay(aggregate, events)
        if aggregate.version is None:
            raise AggregateNotFound(aggregate.stream)
        aggregate.read_only = target is not None
        return aggregate

    def _replay(self, aggregate: Aggregate[Any], events: list[EventPayload]) -> None:
        """The hot loop: per event one dict lookup, one msgspec decode, one applier call."""
        if not events:
            return
        table = self._dispatch_table(type(aggregate))
        lookup = table.get
        version, event_type, schema_version, json_data = events[0]
        try:
            for version, event_type, schema_version, json_data in events:  # noqa: B007 - read on error
                entry = lookup((event_type, schema_version))
                if entry is None:
                    entry = self._resolve(type(aggregate), table, event_type, schema_version)
                decode, applier = entry
                applier(aggregate, decode(json_data))
        except DECODING_ERRORS as error:
            raise EventDataInvalid(
                event_type, schema_version, f"{error} (in {aggregate.stream} at version {version})"
            ) from None
        aggregate.version = events[-1][0]

    def _dispatch_table(self, aggregate_class: type[Aggregate[Any]]) -> _DispatchTable:
        table = self._dispatch.get(aggregate_class)
        if table is None:
            register_events(self.codec, aggregate_class)
            table = self._dispatch[aggregate_class] = {}
        return table

    def _resolve(
        self,
        aggregate_class: type[Aggregate[Any]],
        table: _DispatchTable,
        event_type: str,
        schema_version: int,
    ) -> tuple[JsonDecoder, Applier]:
        event_class, decode = self.codec.decoder_for(event_type, schema_version)
        applier = aggregate_class.appliers.get(event_class)
        if applier is None:
            raise NoApplier(aggregate_class.__name__, event_class.__name__)
        entry = table[(event_type, schema_version)] = (decode, applier)
        return entry

    def _snapshot_reader(self, aggregate_class: type[Aggregate[Any]]) -> SnapshotReader:
        reader = self._snapshot_readers.get(aggregate_class)
        if reader is None:
            reader = self._snapshot_readers[aggregate_class] = SnapshotReader(aggregate_class)
        return reader

    def _pending_events(
        self, aggregate: Aggregate[Any], metadata: Mapping[str, Any] | None
    ) -> tuple[list[NewEvent], ExpectedVersion]:
        """What a save appends, and the version it expects the stream at (the one it was loaded at)."""
        if aggregate.read_only:
            raise HistoricalAggregate(
                f"{aggregate.stream} was loaded as of the past (version {aggregate.version}); "
                "load it without time travel to change it"
            )
        self._dispatch_table(type(aggregate))  # registers its event classes with the codec
        events = [
            self.codec.to_new_event(
                pending.event, metadata=metadata, event_id=pending.event_id, occurred_at=pending.occurred_at
            )
            for pending in aggregate.pending
        ]
        return events, NO_STREAM if aggregate.version is None else aggregate.version

    @staticmethod
    def _expected_of(other: Aggregate[Any]) -> ExpectedVersion:
        """A dependency's expectation: the version it was loaded at (an empty append checks it)."""
        return NO_STREAM if other.version is None else other.version

    def _saved(self, aggregate: Aggregate[Any], saved_events: int, result: AppendResult) -> bool:
        """Mark the aggregate saved; True if the snapshot policy wants a snapshot now."""
        previous = aggregate.version
        aggregate.mark_saved(result.stream_version)
        return (
            saved_events > 0
            and result.stream_version is not None
            and self._policy(type(aggregate)).should_snapshot(previous, result.stream_version)
        )

    def _policy(self, aggregate_class: type[Aggregate[Any]]) -> SnapshotPolicy:
        policy = self._policies.get(aggregate_class)
        if policy is None:
            policy = self._policies[aggregate_class] = policy_for(aggregate_class)
        return policy

    @staticmethod
    def _check_attempts(attempts: int) -> None:
        if attempts < 1:
            raise InvalidInput(f"attempts must be >= 1, not {attempts!r}")

    @staticmethod
    def _conflicted(
        conflict: WrongExpectedVersion,
        id: str,
        attempt: int,
        attempts: int,
        on_conflict: Callable[[WrongExpectedVersion, int], object] | None,
    ) -> None:
        """After a conflicting save in `execute`: raise it if that was the last attempt, else log it
        and tell `on_conflict` before the retry."""
        if attempt == attempts:
            raise conflict
        logger.info("conflict on %s (attempt %d): %s; retrying on fresh state", id, attempt, conflict)
        if on_conflict is not None:
            on_conflict(conflict, attempt)


class Repository(RepositoryBase):
    """Loads and saves aggregates of any class in one store, through one codec.

    `snapshot_policies` overrides an aggregate class's own `snapshot_every` (e.g. to switch
    snapshots off in a test, or tune them per deployment).
    """

    def __init__(
        self,
        store: EventStore,
        codec: EventCodec | None = None,
        *,
        snapshot_policies: Mapping[type[Aggregate[Any]], SnapshotPolicy] | None = None,
    ) -> None:
        super().__init__(codec, snapshot_policies=snapshot_policies)
        self.store = store

    # -- loading -----------------------------------------------------------------------------

    def load(
        self,
        aggregate_class: type[AggregateT],
        id: str,
        *,
        version: int | None = None,
        recorded_at: datetime | None = None,
        occurred_at: datetime | None = None,
        use_snapshots: bool = True,
    ) -> AggregateT:
        """The aggregate now, or as of the past: the events within every bound given.

        * `version`: as of that stream version (the last version at or before it).
        * `recorded_at`: what the store knew at that moment: events recorded at or before it.
        * `occurred_at`: business time: the events whose `occurred_at` is at or before it, applied
          in stream order. Business times can be out of order along the stream (an event entered
          late, back-dated), so no prefix of the stream, and hence no snapshot, stands for this
          view: it always replays from the first event.

        The bounds combine: `occurred_at` with `recorded_at` is the bitemporal view (what was true
        in the world at one moment, as the store knew it at another); `version` with either also
        keeps only the events up to that version. A view of the past is read-only (`save` refuses
        it). Raises `AggregateNotFound` when the stream has no events, or none within the bounds.
        """
        self._check_time_travel(version, recorded_at, occurred_at)
        stream = aggregate_class.stream_name(id)
        if occurred_at is not None:
            occurred = self._read(
                stream, to_version=version, recorded_until=recorded_at, occurred_until=occurred_at
            )
            return self._as_occurred(aggregate_class(id), occurred, occurred_at)

        target = version
        if recorded_at is not None:
            # backwards, `from_version` is the upper bound: the last event within both bounds
            last = self._read(
                stream, from_version=version, recorded_until=recorded_at, backwards=True, limit=1
            )
            target = self._recorded_target(stream, last, recorded_at)

        restored = (
            self._snapshot_reader(aggregate_class).load(self.store, id, target) if use_snapshots else None
        )
        if restored is None:
            aggregate = aggregate_class(id)
            events = self._read_payloads(stream, None, target)
        else:
            aggregate = restored
            after = restored.version + 1
            events = [] if target == restored.version else self._read_payloads(stream, after, target)
        return self._loaded(aggregate, events, target)

    def _read(self, stream: str, **bounds: Any) -> list[RecordedEvent]:
        try:
            return self.store.read_stream(stream, **bounds)
        except StreamNotFound:
            raise AggregateNotFound(stream) from None

    def _read_payloads(
        self, stream: str, from_version: int | None, to_version: int | None
    ) -> list[EventPayload]:
        try:
            return self.store.read_stream_payloads(stream, from_version=from_version, to_version=to_version)
        except StreamNotFound:
            raise AggregateNotFound(stream) from None

    # -- saving ------------------------------------------------------------------------------

    def save(
        self,
        aggregate: Aggregate[Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        depends_on: Iterable[Aggregate[Any]] = (),
    ) -> AppendResult:
        """Append the aggregate's pending events, expecting the stream at the version it was loaded at.

        Raises `WrongExpectedVersion` (and writes nothing) when someone else wrote first; the
        aggregate keeps its pending events then. `depends_on` names other aggregates the decision
        read (a checkout reads product prices): the save then also fails, atomically, if any of them
        changed since it was loaded, so a decision is never made on a value that was already stale
        when it was saved. Takes a snapshot afterwards if the policy says so.
        """
        events, expected = self._pending_events(aggregate, metadata)
        read = list(depends_on)
        if not read:
            result = self.store.append(aggregate.stream, events, expected)
        else:
            with self.store.transaction() as uow:
                uow.lock_streams([aggregate.stream, *(other.stream for other in read)])
                for other in read:
                    uow.append(other.stream, [], self._expected_of(other))
                result = uow.append(aggregate.stream, events, expected)
        if self._saved(aggregate, len(events), result):
            take_snapshot(self.store, aggregate)
        return result

    def execute(
        self,
        aggregate_class: type[AggregateT],
        id: str,
        command: Callable[[AggregateT], Iterable[Aggregate[Any]] | None],
        *,
        metadata: Mapping[str, Any] | None = None,
        create: bool = False,
        attempts: int = 5,
        on_conflict: Callable[[WrongExpectedVersion, int], object] | None = None,
    ) -> tuple[AggregateT, AppendResult]:
        """Load, run `command`, save; on a concurrent write, do it all again on fresh state.

        The command must only decide through the aggregate (no side effects of its own), because
        it may run several times. It may return the other aggregates its decision read; the save
        then depends on them too (see `save`), and a change to any of them is a conflict as well.
        A domain error raised on fresh state (the cart was checked out meanwhile) propagates: that
        is the right answer to the retried decision. `create` starts a new aggregate when the
        stream does not exist. `on_conflict(error, attempt)` is told of each conflict before the
        retry.
        """
        self._check_attempts(attempts)
        for attempt in range(1, attempts + 1):
            try:
                aggregate = self.load(aggregate_class, id)
            except AggregateNotFound:
                if not create:
                    raise
                aggregate = aggregate_class(id)
            read = command(aggregate) or ()
            try:
                return aggregate, self.save(aggregate, metadata=metadata, depends_on=read)
            except WrongExpectedVersion as conflict:
                self._conflicted(conflict, id, attempt, attempts, on_conflict)
        raise AssertionError("unreachable")  # pragma: no cover
