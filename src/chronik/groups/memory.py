"""Consumer groups on `memory://`: the same protocol, with the store's lock as the transaction.

A memory unit of work holds the store's lock from start to end, and every method here takes the
same lock, so a rebalance can never run in the middle of a member's unit of work: that is what
the SQL backends get from their write locks. Writes a unit of work asks for (`commit`, `unpark`)
are applied when called, after every check passed; they are the unit of work's last steps, and
a memory unit of work cannot fail after its last step, so they never need undoing.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

import msgspec

from chronik.groups.coordinator import GroupCoordinator, MemberRow, PartitionRow, plan_rebalance
from chronik.groups.types import (
    GroupConfig,
    GroupConfigMismatch,
    GroupNotFound,
    Lease,
    NewParked,
    ParkedEvent,
    ParkedEventGone,
    PartitionLost,
)
from chronik.store import UnitOfWork
from chronik.store.memory import MemoryStore


class _Partition(msgspec.Struct):
    owner: str | None = None
    epoch: int = 0
    lease_expires_at: datetime | None = None
    checkpoint: int = 0


class _Group(msgspec.Struct):
    config: GroupConfig
    partitions: list[_Partition]
    members: dict[str, MemberRow] = msgspec.field(default_factory=dict)
    parked: dict[int, ParkedEvent] = msgspec.field(default_factory=dict)


class MemoryCoordinator(GroupCoordinator):
    _by_store: ClassVar[weakref.WeakKeyDictionary[MemoryStore, MemoryCoordinator]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._lock = store._lock  # the unit of work's lock: see the module docstring
        self._groups: dict[str, _Group] = {}
        self._next_parked_id = 1

    @classmethod
    def for_store(cls, store: MemoryStore) -> MemoryCoordinator:
        """One coordinator per store, so every member in the process sees the same rows."""
        with store._lock:
            coordinator = cls._by_store.get(store)
            if coordinator is None:
                coordinator = cls._by_store[store] = cls(store)
            return coordinator

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            raise GroupNotFound(name)
        return group

    def ensure_group(self, config: GroupConfig) -> GroupConfig:
        with self._lock:
            group = self._groups.get(config.name)
            if group is None:
                partitions = [_Partition(checkpoint=config.start_position) for _ in range(config.partitions)]
                group = self._groups[config.name] = _Group(config=config, partitions=partitions)
            stored = group.config
            if (stored.partitions, stored.categories, stored.event_types) != (
                config.partitions,
                config.categories,
                config.event_types,
            ):
                raise GroupConfigMismatch(stored, config)
            return stored

    def load_group(self, group: str) -> GroupConfig:
        with self._lock:
            return self._group(group).config

    def list_groups(self) -> list[GroupConfig]:
        with self._lock:
            return [self._groups[name].config for name in sorted(self._groups)]

    def rebalance(self, group: str, member: str, ttl: float) -> list[Lease]:
        with self._lock:
            state = self._group(group)
            now = self.store.clock()
            expires = now + timedelta(seconds=ttl)
            joined = state.members[member].joined_at if member in state.members else now
            state.members[member] = MemberRow(member=member, joined_at=joined, heartbeat_expires_at=expires)
            for name in [m for m, row in state.members.items() if row.heartbeat_expires_at <= now]:
                del state.members[name]
            plan = plan_rebalance(member, now, list(state.members), self._rows(state))
            for number in plan.release:
                partition = state.partitions[number]
                partition.owner, partition.lease_expires_at = None, now
            for number in plan.claim:
                partition = state.partitions[number]
                partition.owner, partition.epoch, partition.lease_expires_at = (
                    member,
                    partition.epoch + 1,
                    expires,
                )
            leases = []
            for number, partition in enumerate(state.partitions):
                if partition.owner == member:
                    partition.lease_expires_at = expires
                    leases.append(Lease(number, partition.epoch, partition.checkpoint))
            return leases

    def leave(self, group: str, member: str) -> None:
        with self._lock:
            state = self._group(group)
            state.members.pop(member, None)
            now = self.store.clock()
            for partition in state.partitions:
                if partition.owner == member:
                    partition.owner, partition.lease_expires_at = None, now

    def commit(
        self,
        uow: UnitOfWork,
        group: str,
        member: str,
        checkpoints: Mapping[int, tuple[int, int]],
        parked: Sequence[NewParked] = (),
        ttl: float | None = None,
    ) -> None:
        with self._lock:
            state = self._group(group)
            # Check every fence before changing anything: all or nothing, like the SQL transaction.
            for number, (epoch, _) in checkpoints.items():
                partition = state.partitions[number]
                if partition.owner != member or partition.epoch != epoch:
                    raise PartitionLost(group, number, member, epoch, partition.owner, partition.epoch)
            now = self.store.clock()
            for item in parked:
                parked_id = self._next_parked_id
                self._next_parked_id += 1
                state.parked[parked_id] = ParkedEvent(
                    id=parked_id,
                    group=group,
                    partition=item.partition,
                    stream=item.stream,
                    global_position=item.global_position,
                    event_id=item.event_id,
                    blocked_by=item.blocked_by,
                    error=item.error,
                    attempts=item.attempts,
                    parked_at=now,
                )
            for number, (_, checkpoint) in checkpoints.items():
                partition = state.partitions[number]
                partition.checkpoint = checkpoint
                if ttl is not None:
                    partition.lease_expires_at = now + timedelta(seconds=ttl)

    def blocked_streams(self, uow: UnitOfWork, group: str, partitions: Sequence[int]) -> dict[str, int]:
        with self._lock:
            wanted = set(partitions)
            blocked: dict[str, int] = {}
            for parked_id in sorted(self._group(group).parked):
                item = self._group(group).parked[parked_id]
                if item.partition in wanted:
                    blocked.setdefault(item.stream, parked_id)
            return blocked

    def list_parked(
        self, group: str, *, stream: str | None = None, parked_id: int | None = None
    ) -> list[ParkedEvent]:
        with self._lock:
            parked = self._group(group).parked
            return [
                parked[i]
                for i in sorted(parked)
                if (stream is None or parked[i].stream == stream) and (parked_id is None or i == parked_id)
            ]

    def unpark(self, uow: UnitOfWork, group: str, parked_id: int) -> None:
        with self._lock:
            if self._group(group).parked.pop(parked_id, None) is None:
                raise ParkedEventGone(group, parked_id)

    def note_replay_failure(self, group: str, parked_id: int, error: str) -> None:
        with self._lock:
            parked = self._group(group).parked
            item = parked.get(parked_id)
            if item is not None:
                parked[parked_id] = msgspec.structs.replace(
                    item, error=error, attempts=item.attempts + 1, blocked_by=None
                )

    def discard_parked(self, group: str, parked_id: int) -> bool:
        with self._lock:
            return self._group(group).parked.pop(parked_id, None) is not None

    def partition_rows(self, group: str) -> list[PartitionRow]:
        with self._lock:
            return self._rows(self._group(group))

    def member_rows(self, group: str) -> list[MemberRow]:
        with self._lock:
            members = self._group(group).members
            return [members[name] for name in sorted(members)]

    @staticmethod
    def _rows(state: _Group) -> list[PartitionRow]:
        return [
            PartitionRow(
                partition=number,
                owner=p.owner,
                epoch=p.epoch,
                lease_expires_at=p.lease_expires_at,
                checkpoint=p.checkpoint,
            )
            for number, p in enumerate(state.partitions)
        ]
