"""The coordination protocol on every backend, step by step on a manual clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chronik import ManualClock, NewEvent
from chronik.groups import (
    Advance,
    GroupConfig,
    GroupConfigMismatch,
    GroupNotFound,
    PartitionLost,
    coordinator_for,
    partition_of,
    plan_rebalance,
    quota,
)
from chronik.groups.coordinator import PartitionRow
from tests.conftest import StoreFactory

TTL = 10.0


def test_partition_of_is_stable_and_spread() -> None:
    # Fixed values: a change of hash would move streams between owners mid-stream.
    assert [partition_of(f"cart-{i}", 16) for i in range(6)] == [14, 8, 13, 14, 9, 2]
    counts = [0] * 16
    for i in range(1600):
        counts[partition_of(f"order-{i}", 16)] += 1
    assert min(counts) > 60 and max(counts) < 140
    with pytest.raises(ValueError):
        partition_of("x", 0)


def test_partition_of_is_the_same_in_another_process() -> None:
    import subprocess
    import sys

    code = (
        "from chronik.groups import partition_of; print([partition_of(f'cart-{i}', 16) for i in range(20)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([partition_of(f"cart-{i}", 16) for i in range(20)])


def test_quotas_differ_by_at_most_one() -> None:
    for members in range(1, 20):
        names = [f"m{i}" for i in range(members)]
        quotas = [quota(name, names, 16) for name in names]
        assert sum(quotas) == 16
        assert max(quotas) - min(quotas) <= 1
    assert quota("stranger", ["a"], 16) == 0


def test_plan_never_takes_a_valid_lease() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        PartitionRow(partition=p, owner="a", epoch=1, lease_expires_at=later, checkpoint=0) for p in range(4)
    ]
    assert plan_rebalance("b", now, ["a", "b"], rows).claim == ()
    assert plan_rebalance("a", now, ["a", "b"], rows).release == (2, 3)
    assert plan_rebalance("b", later, ["a", "b"], rows).claim == (0, 1)  # expired at `later`


def test_join_claim_rebalance_and_leave(store_factory: StoreFactory) -> None:
    clock = ManualClock()
    store = store_factory(clock)
    coordinator = coordinator_for(store)
    coordinator.ensure_group(GroupConfig(name="g", partitions=16))
    a = coordinator.rebalance("g", "a", TTL)
    assert [lease.partition for lease in a] == list(range(16))
    assert {lease.epoch for lease in a} == {1}
    # b joins: it gets nothing until a gives its surplus back.
    assert coordinator.rebalance("g", "b", TTL) == []
    a = coordinator.rebalance("g", "a", TTL)
    assert len(a) == 8
    b = coordinator.rebalance("g", "b", TTL)
    assert len(b) == 8 and {lease.epoch for lease in b} == {2}  # a second grant: epoch 2
    # b leaves: a takes everything back at its next rebalance, each with a higher epoch.
    coordinator.leave("g", "b")
    a = coordinator.rebalance("g", "a", TTL)
    assert len(a) == 16
    assert {lease.epoch for lease in a if lease.partition in {x.partition for x in b}} == {3}


def test_dead_member_partitions_move_after_the_ttl(store_factory: StoreFactory) -> None:
    clock = ManualClock()
    store = store_factory(clock)
    coordinator = coordinator_for(store)
    coordinator.ensure_group(GroupConfig(name="g", partitions=4))
    coordinator.rebalance("g", "a", TTL)
    coordinator.rebalance("g", "b", TTL)
    coordinator.rebalance("g", "a", TTL)
    assert len(coordinator.rebalance("g", "b", TTL)) == 2
    clock.advance(TTL - 1)  # b is silent; a keeps heartbeating
    assert len(coordinator.rebalance("g", "a", TTL)) == 2
    clock.advance(2)  # b's heartbeat and leases have expired now
    assert len(coordinator.rebalance("g", "a", TTL)) == 4
    assert [m.member for m in coordinator.member_rows("g")] == ["a"]


def test_fenced_commit_rejects_a_zombie_and_rolls_back_its_writes(store_factory: StoreFactory) -> None:
    clock = ManualClock()
    store = store_factory(clock)
    coordinator = coordinator_for(store)
    coordinator.ensure_group(GroupConfig(name="g", partitions=1))
    (old,) = coordinator.rebalance("g", "zombie", TTL)
    with store.transaction() as uow:
        uow.append("out-1", NewEvent(type="Applied", data={}))
        coordinator.commit(uow, "g", "zombie", {0: Advance(old.epoch, 0, 5)})
    clock.advance(TTL + 1)  # the zombie pauses past its lease
    (new,) = coordinator.rebalance("g", "alive", TTL)
    assert new.epoch == old.epoch + 1 and new.checkpoint == 5
    with pytest.raises(PartitionLost) as lost, store.transaction() as uow:
        uow.append("out-1", NewEvent(type="Applied", data={}))
        coordinator.commit(uow, "g", "zombie", {0: Advance(old.epoch, 5, 9)})
    assert lost.value.current_owner == "alive" and lost.value.current_epoch == new.epoch
    assert store.stream_version("out-1") == 0  # the zombie's second write was rolled back
    assert coordinator.partition_rows("g")[0].checkpoint == 5
    # Even re-joining, the zombie cannot commit under its old epoch.
    assert coordinator.rebalance("g", "zombie", TTL) == []
    with pytest.raises(PartitionLost), store.transaction() as uow:
        coordinator.commit(uow, "g", "zombie", {0: Advance(old.epoch, 5, 9)})


def test_a_second_process_under_the_same_member_id_is_fenced_by_the_checkpoint(
    store_factory: StoreFactory,
) -> None:
    store = store_factory(ManualClock())
    coordinator = coordinator_for(store)
    coordinator.ensure_group(GroupConfig(name="g", partitions=1))
    (lease,) = coordinator.rebalance("g", "w1", TTL)
    with store.transaction() as uow:
        coordinator.commit(uow, "g", "w1", {0: Advance(lease.epoch, 0, 4)})
    # Same owner, same epoch, but its batch started from checkpoint 0, which has moved: refused.
    with pytest.raises(PartitionLost), store.transaction() as uow:
        coordinator.commit(uow, "g", "w1", {0: Advance(lease.epoch, 0, 3)})
    assert coordinator.partition_rows("g")[0].checkpoint == 4


def test_commit_is_all_or_nothing_over_partitions(store_factory: StoreFactory) -> None:
    store = store_factory(ManualClock())
    coordinator = coordinator_for(store)
    coordinator.ensure_group(GroupConfig(name="g", partitions=2))
    leases = coordinator.rebalance("g", "a", TTL)
    with pytest.raises(PartitionLost), store.transaction() as uow:
        coordinator.commit(
            uow, "g", "a", {0: Advance(leases[0].epoch, 0, 7), 1: Advance(leases[1].epoch + 5, 0, 7)}
        )
    assert [row.checkpoint for row in coordinator.partition_rows("g")] == [0, 0]


def test_group_config_is_checked(store_factory: StoreFactory) -> None:
    store = store_factory()
    coordinator = coordinator_for(store)
    with pytest.raises(GroupNotFound):
        coordinator.load_group("nope")
    stored = coordinator.ensure_group(GroupConfig(name="g", partitions=4, categories=("order",)))
    assert coordinator.ensure_group(GroupConfig(name="g", partitions=4, categories=("order",))) == stored
    with pytest.raises(GroupConfigMismatch):
        coordinator.ensure_group(GroupConfig(name="g", partitions=8, categories=("order",)))
    assert [g.name for g in coordinator.list_groups()] == ["g"]


@pytest.mark.sql_stores
def test_read_model_rows_written_through_the_connection_are_fenced_too(store_factory: StoreFactory) -> None:
    """On SQL stores a projection writes its rows through `uow.connection`; a refused commit drops them."""
    clock = ManualClock()
    store = store_factory(clock)
    coordinator = coordinator_for(store)
    coordinator.ensure_group(GroupConfig(name="g", partitions=1))
    (old,) = coordinator.rebalance("g", "zombie", TTL)
    with store.transaction() as uow:
        uow.connection.execute("CREATE TABLE totals (stream TEXT PRIMARY KEY, n INTEGER)")  # type: ignore[attr-defined]
    clock.advance(TTL + 1)
    coordinator.rebalance("g", "alive", TTL)
    with pytest.raises(PartitionLost), store.transaction() as uow:
        uow.connection.execute("INSERT INTO totals VALUES ('cart-1', 1)")  # type: ignore[attr-defined]
        coordinator.commit(uow, "g", "zombie", {0: Advance(old.epoch, 0, 1)})
    with store.transaction() as uow:
        count = uow.connection.execute("SELECT count(*) FROM totals").fetchone()[0]  # type: ignore[attr-defined]
    assert count == 0
