"""The facts a consumer group keeps and reports, as typed values (for the CLI and for metrics)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final

import msgspec

from chronik.errors import ChronikError

DEFAULT_PARTITIONS: Final = 16


class OnFailure(enum.Enum):
    """What happens to the rest of a stream once one of its events is parked."""

    BLOCK_STREAM = "block"  # later events of the stream are parked behind it, in order (default)
    SKIP = "skip"  # later events of the stream are handled; only the failed event waits


class GroupConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What every member of a group must agree on. Stored once, with the group's first member."""

    name: str
    partitions: int = DEFAULT_PARTITIONS
    categories: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    start_position: int = 0  # a new group's partitions start after this position (0: the beginning)


class Lease(msgspec.Struct, frozen=True):
    """A partition as its owner holds it: the epoch it was granted under and where it resumes."""

    partition: int
    epoch: int
    checkpoint: int


class PartitionStatus(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    owner: str | None
    epoch: int
    lease_expires_at: datetime
    checkpoint: int
    lag: int  # events of the group's filter above the checkpoint, up to the head
    parked: int


class MemberStatus(msgspec.Struct, frozen=True, kw_only=True):
    member: str
    joined_at: datetime
    heartbeat_expires_at: datetime
    partitions: tuple[int, ...]


class GroupStatus(msgspec.Struct, frozen=True, kw_only=True):
    config: GroupConfig
    head_position: int
    members: tuple[MemberStatus, ...]
    partitions: tuple[PartitionStatus, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def parked(self) -> int:
        return sum(p.parked for p in self.partitions)

    @property
    def unowned(self) -> tuple[int, ...]:
        return tuple(p.partition for p in self.partitions if p.owner is None)


class ParkedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event the group set aside: it failed every attempt, or it waits behind one that did."""

    id: int  # parking order: a stream's parked events are replayed in this order
    group: str
    partition: int
    stream: str
    global_position: int
    event_id: str
    blocked_by: int | None  # None: this event failed itself; else the id of the failed one ahead of it
    error: str
    attempts: int
    parked_at: datetime


class NewParked(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    stream: str
    global_position: int
    event_id: str
    blocked_by: int | None
    error: str
    attempts: int


class GroupError(ChronikError):
    """Base of the consumer-group errors."""


class GroupConfigMismatch(GroupError):
    def __init__(self, stored: GroupConfig, requested: GroupConfig) -> None:
        self.stored = stored
        self.requested = requested
        super().__init__(
            f"group {stored.name!r} exists with {stored.partitions} partitions, categories "
            f"{list(stored.categories)} and event types {list(stored.event_types)}; a member asked for "
            f"{requested.partitions}, {list(requested.categories)} and {list(requested.event_types)}. "
            "Use a new group name (changing partitions would move streams between owners mid-stream)."
        )


class GroupNotFound(GroupError, LookupError):
    def __init__(self, group: str) -> None:
        self.group = group
        super().__init__(f"consumer group {group!r} not found")


class PartitionLost(GroupError):
    """A fenced commit was refused: the member no longer owns the partition under that epoch.

    The unit of work it was part of is rolled back, so nothing the handler wrote is kept. The
    member must stop the partition; its new owner resumes from the last accepted checkpoint.
    """

    def __init__(
        self,
        group: str,
        partition: int,
        member: str,
        epoch: int,
        current_owner: str | None,
        current_epoch: int | None,
    ) -> None:
        self.group = group
        self.partition = partition
        self.member = member
        self.epoch = epoch
        self.current_owner = current_owner
        self.current_epoch = current_epoch
        super().__init__(
            f"commit rejected: member {member!r} no longer holds partition {partition} of group {group!r} "
            f"under epoch {epoch} (now owner {current_owner!r}, epoch {current_epoch})"
        )


class ParkedEventGone(GroupError):
    """A parked event was replayed or discarded by someone else first."""

    def __init__(self, group: str, parked_id: int) -> None:
        self.group = group
        self.parked_id = parked_id
        super().__init__(f"parked event {parked_id} of group {group!r} is no longer parked")
