"""Aggregate types by stream category, so generic tools can show any stream's state.

The CLI (and later the web console) only has a stream name. The category (the part before the
first "-") finds the aggregate class; the rest is the aggregate's id. Applications register
their classes at start-up; core modules never register anything themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from chronik.domain.aggregate import Aggregate
from chronik.domain.repository import Repository, register_events
from chronik.errors import (
    AggregateNotFound,
    EventDecodingError,
    EventDoesNotFit,
    InvalidInput,
    UnknownAggregateType,
    VersionNotFound,
)
from chronik.events.codec import DECODING_ERRORS, EventCodec
from chronik.events.envelope import NewEvent, category_of, check_stream_name
from chronik.store.contract import EventStore

AggregateClassT = TypeVar("AggregateClassT", bound=type[Aggregate[Any]])


class AggregateRegistry:
    """Aggregate classes by category, sharing one codec for all their events."""

    def __init__(self, codec: EventCodec | None = None) -> None:
        self.codec = codec or EventCodec()
        self._by_category: dict[str, type[Aggregate[Any]]] = {}

    def register(self, aggregate_class: AggregateClassT) -> AggregateClassT:
        """Register an aggregate class (usable as a decorator); registering it again is a no-op."""
        category = getattr(aggregate_class, "category", None)
        if not isinstance(category, str):
            raise InvalidInput(f"{aggregate_class.__name__} has no category")
        known = self._by_category.get(category)
        if known is not None and known is not aggregate_class:
            raise InvalidInput(f"category {category!r} is already registered for {known.__name__}")
        register_events(self.codec, aggregate_class)
        self._by_category[category] = aggregate_class
        return aggregate_class

    def categories(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_category))

    def for_stream(self, stream: str) -> type[Aggregate[Any]]:
        category = category_of(check_stream_name(stream))
        try:
            return self._by_category[category]
        except KeyError:
            raise UnknownAggregateType(category, self.categories()) from None

    def check_events(self, stream: str, events: Sequence[NewEvent]) -> None:
        """Refuse events that would leave a stream its aggregate cannot be loaded from.

        A stream whose category has a registered aggregate is that aggregate's: an event there of a
        type it has no applier for, or whose data does not decode into the event's class, would make
        every later load of it fail (and every read model that lists it). The HTTP API's generic
        append checks with this before it writes; streams of other categories take any event.
        """
        try:
            aggregate_class = self.for_stream(stream)
        except (UnknownAggregateType, InvalidInput):
            return  # not an aggregate's stream (an invalid name is the store's to refuse)
        name = aggregate_class.__name__
        for event in events:
            try:
                event_class, decode = self.codec.decoder_for(event.type, event.schema_version)
            except EventDecodingError as error:
                raise EventDoesNotFit(stream, name, event.type, str(error)) from None
            if event_class not in aggregate_class.appliers:
                applied = ", ".join(sorted(cls.__name__ for cls in aggregate_class.appliers))
                raise EventDoesNotFit(stream, name, event.type, f"{name} applies only {applied}")
            try:
                decode(msgspec.json.encode(event.data).decode())
            except (*DECODING_ERRORS, TypeError) as error:
                raise EventDoesNotFit(stream, name, event.type, f"its data: {error}") from None

    def repository(self, store: EventStore) -> Repository:
        return Repository(store, self.codec)

    def hydrate_stream(
        self,
        store: EventStore,
        stream: str,
        *,
        version: int | None = None,
        recorded_at: datetime | None = None,
        occurred_at: datetime | None = None,
    ) -> tuple[Aggregate[Any], dict[str, Any]]:
        """The aggregate a stream holds (now or as of the past) and its state as JSON-ready builtins."""
        aggregate_class = self.for_stream(stream)
        id = stream.partition("-")[2]
        if not id:  # such a stream may hold events, but no aggregate: not found, like an empty one
            raise AggregateNotFound(stream, f"has no aggregate id after {aggregate_class.category!r}-")
        aggregate = self.repository(store).load(
            aggregate_class, id, version=version, recorded_at=recorded_at, occurred_at=occurred_at
        )
        # `Repository.load` reads `version` as "at or before"; a person asking for version 99 of a
        # stream that ends at 3 has made a mistake, and is told so (`chronik state`, GET .../state).
        # With a time bound as well, the bounds combine: the version the stream had by then may be
        # lower than the one asked for, and that is the answer, not a mistake.
        pure_version = recorded_at is None and occurred_at is None
        if (
            pure_version
            and version is not None
            and aggregate.version is not None
            and aggregate.version < version
        ):
            raise VersionNotFound(stream, version, aggregate.version)
        return aggregate, aggregate.to_dict()


aggregates = AggregateRegistry()
"""The process-wide registry the CLI reads; `register_aggregate` adds to it."""


def register_aggregate(aggregate_class: AggregateClassT) -> AggregateClassT:
    return aggregates.register(aggregate_class)
