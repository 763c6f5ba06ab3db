"""The audit trail of one business operation across streams."""

from __future__ import annotations

from chronik import AppendRequest, NewEvent
from chronik.audit import trace
from chronik.store import EventStore


def op(event_type: str) -> NewEvent:
    return NewEvent(type=event_type, data={}, metadata={"correlation_id": "op-1"})


def test_trace_follows_one_correlation_id_across_streams_in_global_order(store: EventStore) -> None:
    store.append("cart-1", [op("ItemAdded")])
    store.append("noise-1", [NewEvent(type="Other", data={})])
    store.append_many(
        [
            AppendRequest("cart-1", [op("CheckedOut")]),
            AppendRequest("order-7", [op("Placed")]),
        ]
    )
    events = trace(store, "op-1")
    assert [(e.stream, e.type) for e in events] == [
        ("cart-1", "ItemAdded"),
        ("cart-1", "CheckedOut"),
        ("order-7", "Placed"),
    ]
    assert [e.global_position for e in events] == sorted(e.global_position for e in events)
    assert trace(store, "no-such-operation") == []
