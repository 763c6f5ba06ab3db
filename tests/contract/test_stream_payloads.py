"""`read_stream_payloads`: hydration's lean read must say exactly what `read_stream` says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chronik import EventStore, ManualClock, NewEvent, StreamNotFound
from tests.conftest import StoreFactory


@pytest.mark.parametrize(
    ("from_version", "to_version"), [(None, None), (2, None), (None, 3), (1, 3), (4, 1), (9, None)]
)
def test_payloads_match_read_stream_within_the_same_bounds(
    store: EventStore, from_version: int | None, to_version: int | None
) -> None:
    store.append(
        "cart-1", [NewEvent(type=f"T{n}", data={"n": n}, schema_version=n % 2 + 1) for n in range(6)]
    )
    store.append("cart-2", [NewEvent(type="Other", data={})])
    expected = [
        (event.stream_version, event.type, event.schema_version, event.json_data)
        for event in store.read_stream("cart-1", from_version=from_version, to_version=to_version)
    ]
    payloads = store.read_stream_payloads("cart-1", from_version=from_version, to_version=to_version)
    assert [tuple(payload) for payload in payloads] == expected


def test_a_missing_stream_is_not_found(store: EventStore) -> None:
    with pytest.raises(StreamNotFound):
        store.read_stream_payloads("cart-404")


def test_payloads_up_to_a_recorded_time(store_factory: StoreFactory) -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    store = store_factory(clock)
    for i in range(6):
        store.append("cart-1", NewEvent(type=f"T{i}", data={"i": i}, schema_version=1 + i % 2))
        clock.advance(60)
    full = store.read_stream("cart-1")
    assert store.read_stream_payloads("cart-1") == [
        (e.stream_version, e.type, e.schema_version, e.json_data) for e in full
    ]
    assert [p[0] for p in store.read_stream_payloads("cart-1", from_version=2, to_version=4)] == [2, 3, 4]
    assert [p[0] for p in store.read_stream_payloads("cart-1", recorded_until=full[2].recorded_at)] == [
        0,
        1,
        2,
    ]
    with pytest.raises(StreamNotFound):
        store.read_stream_payloads("cart-404")
