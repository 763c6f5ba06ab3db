"""What operators do with a group: read its status, inspect, replay and discard parked events.

`group_status` returns typed structs so metrics exporters and the CLI read the same figures.
Replaying keeps two promises: a stream's parked events are replayed in parking order, stopping
at the first that fails again (a later event never overtakes an earlier one), and each replay's
effects commit in the unit of work that removes the parked row, so two operators replaying at
once apply each event once (the second one's `unpark` finds no row and rolls back).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import msgspec

from chronik.groups.coordinator import GroupCoordinator, coordinator_for
from chronik.groups.member import GroupHandler, describe_error
from chronik.groups.partitioning import partition_of
from chronik.groups.types import (
    GroupError,
    GroupStatus,
    MemberStatus,
    ParkedEvent,
    ParkedEventGone,
    PartitionStatus,
)
from chronik.store import EventStore

log = logging.getLogger(__name__)


def group_status(
    store: EventStore, group: str, *, coordinator: GroupCoordinator | None = None
) -> GroupStatus:
    """Partitions (owner, epoch, lease, checkpoint, lag, parked), members, and the head, right now.

    Lag is counted by reading the group's filtered log above the lowest checkpoint: cheap for a
    group that keeps up, proportional to the backlog otherwise.
    """
    coordinator = coordinator or coordinator_for(store)
    config = coordinator.load_group(group)
    head = store.head_position()
    rows = coordinator.partition_rows(group)
    members = coordinator.member_rows(group)
    parked = Counter(item.partition for item in coordinator.list_parked(group))
    lag: Counter[int] = Counter()
    lowest = min((row.checkpoint for row in rows), default=head)
    checkpoints = {row.partition: row.checkpoint for row in rows}
    for event in store.iter_all(
        lowest + 1, categories=config.categories or None, event_types=config.event_types or None
    ):
        if event.global_position > head:
            break
        number = partition_of(event.stream, config.partitions)
        if event.global_position > checkpoints[number]:
            lag[number] += 1
    partitions = tuple(
        PartitionStatus(
            partition=row.partition,
            owner=row.owner,
            epoch=row.epoch,
            lease_expires_at=row.lease_expires_at or store.clock(),
            checkpoint=row.checkpoint,
            lag=lag[row.partition],
            parked=parked[row.partition],
        )
        for row in rows
    )
    member_status = tuple(
        MemberStatus(
            member=member.member,
            joined_at=member.joined_at,
            heartbeat_expires_at=member.heartbeat_expires_at,
            partitions=tuple(row.partition for row in rows if row.owner == member.member),
        )
        for member in members
    )
    return GroupStatus(config=config, head_position=head, members=member_status, partitions=partitions)


def list_parked(
    store: EventStore, group: str, *, stream: str | None = None, coordinator: GroupCoordinator | None = None
) -> list[ParkedEvent]:
    coordinator = coordinator or coordinator_for(store)
    coordinator.load_group(group)
    return coordinator.list_parked(group, stream=stream)


class ReplayResult(msgspec.Struct, frozen=True):
    replayed: tuple[int, ...]  # parked ids whose effects are now committed
    failed: tuple[tuple[int, str], ...]  # (parked id, error): still parked, their stream stopped there


def replay_parked(
    store: EventStore,
    group: str,
    handler: GroupHandler,
    *,
    stream: str | None = None,
    parked_id: int | None = None,
    coordinator: GroupCoordinator | None = None,
) -> ReplayResult:
    """Run parked events through `handler` again, stream by stream in parking order.

    With `parked_id`, only that event, and only if it is the first parked event of its stream
    (replaying a later one first would break the stream's order).
    """
    coordinator = coordinator or coordinator_for(store)
    coordinator.load_group(group)
    entries = coordinator.list_parked(group, stream=stream)
    if parked_id is not None:
        chosen = [item for item in entries if item.id == parked_id]
        if not chosen:
            raise ParkedEventGone(group, parked_id)
        first = min(item.id for item in entries if item.stream == chosen[0].stream)
        if first != parked_id:
            raise GroupError(
                f"parked event {parked_id} waits behind parked event {first} of stream "
                f"{chosen[0].stream!r}: replay that one first, or the whole stream"
            )
        entries = chosen
    by_stream: dict[str, list[ParkedEvent]] = {}
    for item in entries:
        by_stream.setdefault(item.stream, []).append(item)
    replayed: list[int] = []
    failed: list[tuple[int, str]] = []
    for items in by_stream.values():
        for item in items:
            error = _replay_one(store, coordinator, group, handler, item)
            if error is not None:
                failed.append((item.id, error))
                break  # later events of this stream stay behind it
            replayed.append(item.id)
    return ReplayResult(tuple(replayed), tuple(failed))


def _replay_one(
    store: EventStore, coordinator: GroupCoordinator, group: str, handler: GroupHandler, item: ParkedEvent
) -> str | None:
    found = store.read_all(item.global_position, to_position=item.global_position, limit=1)
    if not found or str(found[0].event_id) != item.event_id:
        return f"event {item.event_id} is no longer at position {item.global_position}"
    try:
        with store.transaction() as uow:
            handler(found[0], uow)
            coordinator.unpark(uow, group, item.id)
    except ParkedEventGone:
        return None  # someone else replayed or discarded it: not ours to apply again
    except Exception as error:
        text = describe_error(error)
        log.warning("replay of parked event %d failed: %s", item.id, text)
        coordinator.note_replay_failure(group, item.id, text)
        return text
    return None


def discard_parked(
    store: EventStore, group: str, parked_ids: Sequence[int], *, coordinator: GroupCoordinator | None = None
) -> int:
    """Drop parked events for good (their effects are never applied); returns how many were dropped.

    An id that is not parked (any more) counts 0; an unknown group raises `GroupNotFound`.
    """
    coordinator = coordinator or coordinator_for(store)
    coordinator.load_group(group)
    return sum(coordinator.discard_parked(group, parked_id) for parked_id in parked_ids)
