"""Consumer groups: many members share one filtered log, each stream in order, fenced by epochs.

    from chronik.groups import GroupConfig, GroupMember

    member = GroupMember(store, GroupConfig(name="billing", categories=("order",)), handle)
    member.run()   # handle(event, uow) is called with the unit of work that commits the checkpoint

See `coordinator.py` for the protocol (membership, leases, epochs, rebalancing, fencing) and
`member.py` for batching, retries and parking.
"""

from chronik.groups.coordinator import GroupCoordinator, coordinator_for, plan_rebalance, quota
from chronik.groups.member import GroupHandler, GroupMember, MemberStats
from chronik.groups.operations import ReplayResult, discard_parked, group_status, list_parked, replay_parked
from chronik.groups.partitioning import partition_of
from chronik.groups.types import (
    DEFAULT_PARTITIONS,
    GroupConfig,
    GroupConfigMismatch,
    GroupError,
    GroupNotFound,
    GroupStatus,
    Lease,
    MemberStatus,
    OnFailure,
    ParkedEvent,
    ParkedEventGone,
    PartitionLost,
    PartitionStatus,
)

__all__ = [
    "DEFAULT_PARTITIONS",
    "GroupConfig",
    "GroupConfigMismatch",
    "GroupCoordinator",
    "GroupError",
    "GroupHandler",
    "GroupMember",
    "GroupNotFound",
    "GroupStatus",
    "Lease",
    "MemberStats",
    "MemberStatus",
    "OnFailure",
    "ParkedEvent",
    "ParkedEventGone",
    "PartitionLost",
    "PartitionStatus",
    "ReplayResult",
    "coordinator_for",
    "discard_parked",
    "group_status",
    "list_parked",
    "partition_of",
    "plan_rebalance",
    "quota",
    "replay_parked",
]
