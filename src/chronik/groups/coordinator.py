"""The storage interface of consumer groups, and the one rebalancing rule every backend shares.

A backend joins consumer groups by implementing `GroupCoordinator` over its own database (rows in
the same database as the events, so a fenced checkpoint and the handler's writes can share one
transaction). The fairness rule (`plan_rebalance`) is pure and lives here once, so every backend
balances the same way and the model test checks one rule.

The protocol, in short:

* **Membership.** Each member upserts its row with `heartbeat_expires_at = now + ttl` every
  ttl/3; any member deletes rows whose heartbeat expired. The live rows decide the quotas.
* **Leases.** A partition row has `owner`, `epoch`, `lease_expires_at`, `checkpoint`. It is free
  when `owner` is NULL or its lease expired. Claiming sets `owner = me, epoch = epoch + 1`:
  every grant raises the epoch, so a grant is never confused with an earlier one.
* **Rebalance.** With N live members and P partitions, the first P mod N members (by id) may hold
  ceil(P/N), the others floor(P/N). A member above its quota releases the surplus; a member
  below it claims free partitions. Quotas differ by at most one, hence "no member holds more than
  one partition above any other" once every live member has rebalanced twice.
* **Fencing.** A checkpoint moves only through `commit`, inside the unit of work that holds the
  handler's writes, and only if `owner`, `epoch` and the checkpoint the batch started from are
  still the caller's; otherwise the unit of work is rolled back. Owner and epoch change only by
  claim/release, in their own transactions, so at most one member can commit for a partition
  at any time.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from chronik.groups.types import Advance, GroupConfig, Lease, NewParked, ParkedEvent
from chronik.store import EventStore, UnitOfWork


class PartitionRow(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    owner: str | None
    epoch: int
    lease_expires_at: datetime | None  # None: never leased
    checkpoint: int

    def is_free(self, now: datetime) -> bool:
        return self.owner is None or self.lease_expires_at is None or self.lease_expires_at <= now


class MemberRow(msgspec.Struct, frozen=True, kw_only=True):
    member: str
    joined_at: datetime
    heartbeat_expires_at: datetime


class RebalancePlan(msgspec.Struct, frozen=True):
    release: tuple[int, ...]
    claim: tuple[int, ...]


def quota(member: str, live_members: Sequence[str], partitions: int) -> int:
    """How many partitions `member` should hold: floor(P/N), plus one for the first P mod N members by id."""
    ordered = sorted(set(live_members))
    if member not in ordered:
        return 0
    base, extra = divmod(partitions, len(ordered))
    return base + (1 if ordered.index(member) < extra else 0)


def plan_rebalance(
    member: str, now: datetime, live_members: Sequence[str], rows: Sequence[PartitionRow]
) -> RebalancePlan:
    """What `member` should release and claim so that the group converges to the quotas.

    It never takes a partition whose lease is still valid for someone else: a live owner gives
    its surplus away itself (after finishing its batch), and a dead owner's lease runs out.
    """
    target = quota(member, live_members, len(rows))
    mine = sorted(row.partition for row in rows if row.owner == member)
    if len(mine) > target:
        return RebalancePlan(release=tuple(mine[target:]), claim=())
    free = sorted(row.partition for row in rows if row.owner != member and row.is_free(now))
    return RebalancePlan(release=(), claim=tuple(free[: target - len(mine)]))


class GroupCoordinator(abc.ABC):
    """Membership, leases, fenced checkpoints and parked events of consumer groups, in one store.

    Methods taking a `uow` run inside the caller's unit of work; `commit` and `unpark` must be
    its last steps (the memory backend applies them when they are called). All other methods run
    their own short transaction, with times from `store.clock`.
    """

    store: EventStore

    @abc.abstractmethod
    def ensure_group(self, config: GroupConfig) -> GroupConfig:
        """Create the group and its partitions if new; return the stored config (raises on mismatch)."""

    @abc.abstractmethod
    def load_group(self, group: str) -> GroupConfig:
        """The stored config; raises `GroupNotFound`."""

    @abc.abstractmethod
    def list_groups(self) -> list[GroupConfig]: ...

    @abc.abstractmethod
    def rebalance(self, group: str, member: str, ttl: float) -> list[Lease]:
        """Heartbeat, expire dead members, release or claim per `plan_rebalance`, renew leases.

        Returns the partitions `member` holds afterwards, with epochs and checkpoints.
        """

    @abc.abstractmethod
    def leave(self, group: str, member: str) -> None:
        """Remove the member and free its partitions at once (their next grant raises the epoch)."""

    @abc.abstractmethod
    def commit(
        self,
        uow: UnitOfWork,
        group: str,
        member: str,
        checkpoints: Mapping[int, Advance],
        parked: Sequence[NewParked] = (),
        ttl: float | None = None,
    ) -> None:
        """Fenced: move each partition's checkpoint (`{partition: Advance(...)}`), park events.

        Raises `PartitionLost` (and the unit of work must roll back) unless `member` owns every
        partition under the given epoch and its checkpoint is still `previous`. A `ttl` also
        renews those leases.
        """

    @abc.abstractmethod
    def blocked_streams(self, uow: UnitOfWork, group: str, partitions: Sequence[int]) -> dict[str, int]:
        """Streams of these partitions with parked events: stream -> id of its first parked event."""

    @abc.abstractmethod
    def list_parked(
        self, group: str, *, stream: str | None = None, parked_id: int | None = None
    ) -> list[ParkedEvent]:
        """Parked events in parking order (ids ascending)."""

    @abc.abstractmethod
    def unpark(self, uow: UnitOfWork, group: str, parked_id: int) -> None:
        """Remove a parked event in the unit of work that replays it; raises `ParkedEventGone`."""

    @abc.abstractmethod
    def note_replay_failure(self, group: str, parked_id: int, error: str) -> None: ...

    @abc.abstractmethod
    def discard_parked(self, group: str, parked_id: int) -> bool: ...

    @abc.abstractmethod
    def partition_rows(self, group: str) -> list[PartitionRow]: ...

    @abc.abstractmethod
    def member_rows(self, group: str) -> list[MemberRow]: ...


def coordinator_for(store: EventStore) -> GroupCoordinator:
    """The coordinator of the store's backend (PostgreSQL adds `chronik.groups.postgres`)."""
    from chronik.store.memory import MemoryStore
    from chronik.store.sqlite import SQLiteStore

    if isinstance(store, MemoryStore):
        from chronik.groups.memory import MemoryCoordinator

        return MemoryCoordinator.for_store(store)
    if isinstance(store, SQLiteStore):
        from chronik.groups.sqlite import SQLiteCoordinator

        return SQLiteCoordinator(store)
    from chronik.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from chronik.groups import postgres as postgres_groups

        return postgres_groups.coordinator_for(store)  # one per store: its tables migrate once
    raise NotImplementedError(f"consumer groups do not support {type(store).__name__} yet")
