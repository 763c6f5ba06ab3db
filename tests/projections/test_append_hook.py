"""The store's append hook: additive, inside the unit of work, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from chronik import NO_STREAM, NewEvent
from chronik.events.envelope import RecordedEvent
from chronik.store import EventStore, UnitOfWork


def test_hook_sees_the_events_just_written_inside_the_unit_of_work(store: EventStore) -> None:
    seen: list[tuple[UnitOfWork, list[RecordedEvent]]] = []

    def hook(uow: UnitOfWork, events: Sequence[RecordedEvent]) -> None:
        seen.append((uow, list(events)))

    remove = store.add_append_hook(hook)
    result = store.append("cart-1", [NewEvent(type="A", data={"n": 1}), NewEvent(type="B", data={"n": 2})])
    assert len(seen) == 1
    events = seen[0][1]
    assert [e.global_position for e in events] == list(result.global_positions)
    assert [(e.type, e.data, e.stream, e.stream_version) for e in events] == [
        ("A", {"n": 1}, "cart-1", 0),
        ("B", {"n": 2}, "cart-1", 1),
    ]
    remove()
    store.append("cart-1", [NewEvent(type="C", data={})])
    assert len(seen) == 1


def test_a_failing_hook_rolls_the_append_back(store: EventStore) -> None:
    def hook(uow: UnitOfWork, events: Sequence[RecordedEvent]) -> None:
        raise RuntimeError("read model refused")

    store.add_append_hook(hook)
    with pytest.raises(RuntimeError, match="read model refused"):
        store.append("cart-1", [NewEvent(type="A", data={})])
    assert store.stream_version("cart-1") is None
    assert store.head_position() == 0


def test_retries_and_empty_batches_call_no_hook(store: EventStore) -> None:
    event = NewEvent(type="A", data={}, event_id=uuid.uuid4())
    first = store.append("cart-1", [event], expected_version=NO_STREAM)
    calls: list[int] = []
    store.add_append_hook(lambda uow, events: calls.append(len(events)))
    retried = store.append("cart-1", [event], expected_version=NO_STREAM)
    assert retried.already_recorded and retried.global_positions == first.global_positions
    store.append("cart-1", [])
    assert calls == []
    store.append("cart-1", [NewEvent(type="B", data={})])
    assert calls == [1]


def test_hooks_run_for_each_append_of_an_atomic_multi_stream_append(store: EventStore) -> None:
    from chronik import AppendRequest

    streams: list[str] = []
    store.add_append_hook(lambda uow, events: streams.extend(e.stream for e in events))
    store.append_many(
        [
            AppendRequest("a-1", [NewEvent(type="A", data={})]),
            AppendRequest("b-1", [NewEvent(type="B", data={}), NewEvent(type="B", data={})]),
        ]
    )
    assert streams == ["a-1", "b-1", "b-1"]
