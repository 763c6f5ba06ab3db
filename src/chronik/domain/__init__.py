"""The domain layer: aggregates that decide and record events, and the repository that stores them.

Depends on the events and store layers only; nothing here imports the CLI, servers or examples.
"""

from chronik.domain.aggregate import Aggregate, NoApplier, PendingEvent, applies
from chronik.domain.registry import AggregateRegistry, aggregates, register_aggregate
from chronik.domain.repository import Repository
from chronik.domain.snapshots import EveryNEvents, NeverSnapshot, SnapshotPolicy
from chronik.errors import AggregateNotFound, DomainError, HistoricalAggregate, UnknownAggregateType
from chronik.events.codec import EventCodec

__all__ = [
    "Aggregate",
    "AggregateNotFound",
    "AggregateRegistry",
    "DomainError",
    "EventCodec",
    "EveryNEvents",
    "HistoricalAggregate",
    "NeverSnapshot",
    "NoApplier",
    "PendingEvent",
    "Repository",
    "SnapshotPolicy",
    "UnknownAggregateType",
    "aggregates",
    "applies",
    "register_aggregate",
]
