"""The codec: typed events to stored JSON and back, tolerant reading, upcaster chains."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronik.errors import (
    EventDataInvalid,
    EventSchemaTooNew,
    InvalidInput,
    MissingUpcaster,
    UnknownEventType,
)
from chronik.events.codec import EventCodec
from chronik.events.envelope import RecordedEvent
from chronik.store import EventStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class ItemAdded(msgspec.Struct):
    sku: str
    quantity: int = 1


@dataclasses.dataclass
class PriceChanged:
    sku: str
    cents: int
    currency: str = "EUR"


def recorded(event_type: str, json_data: str, schema_version: int = 1) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        stream="s-1",
        stream_version=0,
        global_position=1,
        type=event_type,
        json_data=json_data,
        json_metadata="{}",
        schema_version=schema_version,
        recorded_at=NOW,
        occurred_at=NOW,
    )


def test_struct_and_dataclass_round_trip_through_a_real_store(store: EventStore) -> None:
    codec = EventCodec()
    codec.register(ItemAdded)
    codec.register(PriceChanged)
    events = [ItemAdded("tea", 2), PriceChanged("tea", 450)]
    store.append("shop-1", [codec.to_new_event(event, metadata={"actor": "ann"}) for event in events])
    stored = store.read_stream("shop-1")
    assert [event.type for event in stored] == ["ItemAdded", "PriceChanged"]
    assert [codec.decode(event) for event in stored] == events
    assert stored[0].actor == "ann"


def test_type_name_and_schema_version_come_from_class_attributes() -> None:
    class Renamed(msgspec.Struct):
        event_type: ClassVar[str] = "shop.ItemAdded"
        schema_version: ClassVar[int] = 3
        sku: str

    codec = EventCodec()
    codec.register(Renamed)
    event_id = uuid.uuid4()
    new = codec.to_new_event(Renamed("tea"), event_id=event_id, occurred_at=NOW)
    assert (new.type, new.schema_version, new.event_id, new.occurred_at) == (
        "shop.ItemAdded",
        3,
        event_id,
        NOW,
    )
    assert codec.decode(recorded("shop.ItemAdded", '{"sku":"tea"}', 3)) == Renamed("tea")


def test_a_name_given_at_registration_wins() -> None:
    codec = EventCodec()
    codec.register(ItemAdded, name="CartItemAdded")
    assert codec.to_new_event(ItemAdded("x")).type == "CartItemAdded"


@pytest.mark.parametrize("cls", [ItemAdded, PriceChanged])
def test_reading_is_tolerant_unknown_fields_ignored_missing_defaulted(cls: type) -> None:
    codec = EventCodec()
    codec.register(cls)
    data = '{"sku":"tea","cents":1,"added_later":{"x":[1,2]}}'
    decoded = codec.decode(recorded(cls.__name__, data))
    if cls is ItemAdded:
        assert decoded == ItemAdded("tea", 1)
    else:
        assert decoded == PriceChanged("tea", 1, "EUR")


def test_data_that_does_not_fit_names_the_event() -> None:
    codec = EventCodec()
    codec.register(ItemAdded)
    with pytest.raises(EventDataInvalid, match=r"'ItemAdded'.*quantity"):
        codec.decode(recorded("ItemAdded", '{"sku":"tea","quantity":"two"}'))
    with pytest.raises(EventDataInvalid, match="'ItemAdded'"):
        codec.decode(recorded("ItemAdded", '{"quantity":2}'))


class OrderPlacedV3(msgspec.Struct):
    """Version 1 was "OrderCreated" {"total": euros}; 2 renamed it and used cents; 3 added the currency."""

    event_type: ClassVar[str] = "OrderPlaced"
    schema_version: ClassVar[int] = 3
    total_cents: int
    currency: str


def evolved_codec() -> EventCodec:
    codec = EventCodec()
    codec.register(OrderPlacedV3)

    @codec.upcaster("OrderCreated", 1, renamed_to="OrderPlaced")
    def euros_to_cents(data: dict[str, Any]) -> dict[str, Any]:
        return {"total_cents": round(data.pop("total") * 100), **data}

    @codec.upcaster("OrderPlaced", 2)
    def add_currency(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": "EUR"}

    return codec


def test_upcasters_chain_across_versions_and_a_rename() -> None:
    codec = evolved_codec()
    assert codec.decode(recorded("OrderCreated", '{"total": 12.5}', 1)) == OrderPlacedV3(1250, "EUR")
    assert codec.decode(recorded("OrderPlaced", '{"total_cents": 99}', 2)) == OrderPlacedV3(99, "EUR")
    assert codec.decode(recorded("OrderPlaced", '{"total_cents":5,"currency":"SEK"}', 3)) == OrderPlacedV3(
        5, "SEK"
    )


def test_old_events_in_a_store_are_upcast_on_read_and_never_rewritten(store: EventStore) -> None:
    from chronik.events.envelope import NewEvent

    store.append("order-1", [NewEvent(type="OrderCreated", data={"total": 3.0}, schema_version=1)])
    codec = evolved_codec()
    (event,) = store.read_stream("order-1")
    assert codec.decode(event) == OrderPlacedV3(300, "EUR")
    (again,) = store.read_stream("order-1")
    assert (again.type, again.schema_version, again.data) == ("OrderCreated", 1, {"total": 3.0})


def test_a_gap_in_the_chain_names_the_type_and_version() -> None:
    codec = EventCodec()
    codec.register(OrderPlacedV3)
    codec.add_upcaster("OrderPlaced", 2, lambda data: {**data, "currency": "EUR"})
    with pytest.raises(MissingUpcaster) as caught:
        codec.decode(recorded("OrderPlaced", '{"total_cents":1}', 1))
    assert (caught.value.event_type, caught.value.from_version, caught.value.target_version) == (
        "OrderPlaced",
        1,
        3,
    )
    assert "'OrderPlaced' from schema version 1" in str(caught.value)


def test_unknown_types_and_too_new_versions_are_clear_errors() -> None:
    codec = evolved_codec()
    with pytest.raises(UnknownEventType, match="'Nope' \\(schema version 1\\)"):
        codec.decode(recorded("Nope", "{}"))
    with pytest.raises(UnknownEventType, match="'OrderCreated' \\(schema version 2\\)"):
        codec.decode(recorded("OrderCreated", "{}", 2))
    with pytest.raises(EventSchemaTooNew, match="version 4"):
        codec.decode(recorded("OrderPlaced", "{}", 4))


def test_registration_refuses_clashes_and_non_event_classes() -> None:
    codec = EventCodec()
    codec.register(ItemAdded)
    assert codec.register(ItemAdded) is ItemAdded

    class ItemAddedToo(msgspec.Struct):
        event_type: ClassVar[str] = "ItemAdded"

    with pytest.raises(InvalidInput, match="already registered"):
        codec.register(ItemAddedToo)
    with pytest.raises(InvalidInput, match="Struct or a dataclass"):
        codec.register(dict)

    class VersionAsField(msgspec.Struct):
        schema_version: int

    with pytest.raises(InvalidInput, match="plain class attribute"):
        codec.register(VersionAsField)
    with pytest.raises(InvalidInput, match="not a registered event class"):
        codec.to_new_event(PriceChanged("x", 1))
    with pytest.raises(InvalidInput, match="already registered"):
        codec.add_upcaster("X", 1, dict)
        codec.add_upcaster("X", 1, dict)


@given(sku=st.text(min_size=1, max_size=20), quantity=st.integers(-(2**53), 2**53))
def test_any_event_survives_encode_then_decode(sku: str, quantity: int) -> None:
    codec = EventCodec()
    codec.register(ItemAdded)
    new = codec.to_new_event(ItemAdded(sku, quantity))
    json_data = msgspec.json.encode(new.data).decode()
    assert codec.decode(recorded(new.type, json_data)) == ItemAdded(sku, quantity)


def test_a_failing_upcaster_is_named_in_the_error() -> None:
    codec = EventCodec()
    codec.register(OrderPlacedV3)

    @codec.upcaster("OrderPlaced", 2)
    def add_currency(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": data["country"]}

    with pytest.raises(EventDataInvalid, match=r"upcaster add_currency failed: KeyError\('country'\)"):
        codec.decode(recorded("OrderPlaced", '{"total_cents": 1}', 2))
