"""Group members handling events: batching, order, retries, parking, replay, status, on every backend."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from chronik import AppendRequest, ManualClock, NewEvent, RecordedEvent
from chronik.groups import (
    GroupConfig,
    GroupError,
    GroupMember,
    OnFailure,
    discard_parked,
    group_status,
    list_parked,
    replay_parked,
)
from chronik.store import EventStore, UnitOfWork
from tests.conftest import StoreFactory


def _fill(store: EventStore, streams: int, per_stream: int, category: str = "in") -> None:
    for version in range(per_stream):
        store.append_many(
            AppendRequest(f"{category}-{s}", [NewEvent(type="Happened", data={"v": version})])
            for s in range(streams)
        )


def apply(event: RecordedEvent, uow: UnitOfWork) -> None:
    """Effect: one Applied event per input event, in the output stream of its input stream."""
    uow.append(
        "applied-" + event.stream.partition("-")[2],
        NewEvent(type="Applied", data={"version": event.stream_version, "position": event.global_position}),
    )


def _outputs(store: EventStore) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for event in store.read_all(categories=["applied"]):
        out[event.stream].append(event.data["version"])
    return dict(out)


def test_one_member_drains_everything_in_order(store: EventStore) -> None:
    _fill(store, 20, 5)
    store.append("noise-1", NewEvent(type="Happened", data={}))
    member = GroupMember(store, GroupConfig(name="g", partitions=4, categories=("in",)), apply, batch_size=7)
    member.run(until_idle=True)
    assert _outputs(store) == {f"applied-{s}": list(range(5)) for s in range(20)}
    status = group_status(store, "g")
    assert status.total_lag == 0 and status.parked == 0
    assert all(p.checkpoint == store.head_position() for p in status.partitions)
    assert status.members == ()  # it left when idle


def test_two_members_in_threads_share_the_work_exactly_once(store_factory: StoreFactory) -> None:
    store = store_factory()
    _fill(store, 30, 10)
    config = GroupConfig(name="g", partitions=8, categories=("in",))
    members = [GroupMember(store, config, apply, batch_size=16, member_id=f"m{i}") for i in range(2)]
    threads = [threading.Thread(target=m.run) for m in members]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = members[0].coordinator.partition_rows("g")
            if all(row.checkpoint >= store.head_position() for row in rows):
                break
            time.sleep(0.02)
    finally:
        for member in members:
            member.stop()
        for thread in threads:
            thread.join(30)
    assert _outputs(store) == {f"applied-{s}": list(range(10)) for s in range(30)}
    assert sum(m.stats.handled for m in members) == 300


def _flaky(failing: set[tuple[str, int]], calls: list[tuple[str, int]]) -> object:
    def handle(event: RecordedEvent, uow: UnitOfWork) -> None:
        calls.append((event.stream, event.stream_version))
        if (event.stream, event.stream_version) in failing:
            raise ValueError(f"cannot handle {event.stream}@{event.stream_version}")
        apply(event, uow)

    return handle


@pytest.mark.parametrize("mode", [OnFailure.BLOCK_STREAM, OnFailure.SKIP])
def test_failures_are_retried_then_parked_in_order(store: EventStore, mode: OnFailure) -> None:
    _fill(store, 3, 4)
    failing = {("in-1", 1)}
    calls: list[tuple[str, int]] = []
    member = GroupMember(
        store,
        GroupConfig(name="g", partitions=2, categories=("in",)),
        _flaky(failing, calls),  # type: ignore[arg-type]
        max_attempts=3,
        backoff=0.001,
        on_failure=mode,
    )
    member.run(until_idle=True)
    assert calls.count(("in-1", 1)) >= 3  # the batch try, then three attempts one by one
    parked = list_parked(store, "g")
    outputs = _outputs(store)
    assert outputs["applied-0"] == outputs["applied-2"] == [0, 1, 2, 3]
    if mode is OnFailure.BLOCK_STREAM:
        assert outputs["applied-1"] == [0]  # later events wait behind the failed one
        assert [(p.stream, p.global_position) for p in parked] == sorted(
            (p.stream, p.global_position) for p in parked
        )
        assert [p.blocked_by is None for p in parked] == [True, False, False]
        assert parked[0].attempts == 3 and "cannot handle in-1@1" in parked[0].error
        assert parked[1].blocked_by == parked[0].id
    else:
        assert outputs["applied-1"] == [0, 2, 3]
        assert len(parked) == 1
    assert group_status(store, "g").parked == len(parked)

    # Replaying a later event first is refused: it would overtake the failed one.
    if mode is OnFailure.BLOCK_STREAM:
        with pytest.raises(GroupError):
            replay_parked(store, "g", apply, parked_id=parked[1].id)
    # Still failing: nothing moves, the error is recorded.
    result = replay_parked(store, "g", _flaky(failing, []))  # type: ignore[arg-type]
    assert result.replayed == () and result.failed[0][0] == parked[0].id
    assert list_parked(store, "g")[0].attempts == 4
    # Fixed: the stream's parked events are applied in order, each once.
    failing.clear()
    result = replay_parked(store, "g", apply)
    assert result.replayed == tuple(p.id for p in parked) and result.failed == ()
    assert list_parked(store, "g") == []
    if mode is OnFailure.BLOCK_STREAM:
        assert _outputs(store)["applied-1"] == [0, 1, 2, 3]
    else:
        assert _outputs(store)["applied-1"] == [0, 2, 3, 1]
    # New events of that stream flow normally again.
    store.append("in-1", NewEvent(type="Happened", data={}))
    GroupMember(store, GroupConfig(name="g", partitions=2, categories=("in",)), apply).run(until_idle=True)
    assert _outputs(store)["applied-1"][-1] == 4


def test_discard_parked(store: EventStore) -> None:
    _fill(store, 1, 2)
    member = GroupMember(
        store,
        GroupConfig(name="g", partitions=1),
        _flaky({("in-0", 0)}, []),  # type: ignore[arg-type]
        max_attempts=1,
    )
    member.run(until_idle=True)
    parked = list_parked(store, "g")
    assert len(parked) == 2
    assert discard_parked(store, "g", [parked[0].id]) == 1
    assert discard_parked(store, "g", [parked[0].id]) == 0
    assert replay_parked(store, "g", apply).replayed == (parked[1].id,)
    assert _outputs(store) == {"applied-0": [1]}


def test_a_member_paused_past_its_lease_is_fenced(store_factory: StoreFactory) -> None:
    """The seed's case: a stale worker must not write after another took over."""
    clock = ManualClock()
    store = store_factory(clock)
    _fill(store, 4, 3)
    config = GroupConfig(name="g", partitions=1, categories=("in",))
    zombie = GroupMember(store, config, apply, member_id="zombie", lease_ttl=5, batch_size=4)
    zombie.rebalance()
    clock.advance(6)  # the zombie is paused past its lease; another member takes over
    other = GroupMember(store, config, apply, member_id="other", lease_ttl=5)
    other.rebalance()
    assert list(other.leases) == [0]
    handled = zombie.step()  # reads a page, handles it, and its commit is refused
    assert handled == 0 and zombie.stats.rejected_commits == 1 and zombie.leases == {}
    assert _outputs(store) == {}
    other.run(until_idle=True)
    assert _outputs(store) == {f"applied-{s}": [0, 1, 2] for s in range(4)}


def test_status_reports_owners_epochs_lag(store_factory: StoreFactory) -> None:
    store = store_factory(ManualClock())
    _fill(store, 10, 2)
    config = GroupConfig(name="g", partitions=4, categories=("in",))
    member = GroupMember(store, config, apply, member_id="m", batch_size=5)
    member.rebalance()
    status = group_status(store, "g")
    assert status.total_lag == 20 and status.unowned == ()
    assert {p.owner for p in status.partitions} == {"m"} and {p.epoch for p in status.partitions} == {1}
    assert status.members[0].partitions == (0, 1, 2, 3)
    member.step()
    assert group_status(store, "g").total_lag < 20
