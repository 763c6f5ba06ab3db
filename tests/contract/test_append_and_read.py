"""The store contract, run against every backend through the `store` fixture."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from chronik import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendRequest,
    DuplicateEventId,
    EventDataNotSerializable,
    EventStore,
    EventTooLarge,
    InvalidExpectedVersion,
    InvalidStreamName,
    ManualClock,
    NewEvent,
    StreamNotFound,
    WrongExpectedVersion,
)
from chronik.errors import InvalidEventType, TimeOutOfRange
from chronik.store.contract import Snapshot
from tests.conftest import StoreFactory


def ev(event_type: str = "ItemAdded", **data: object) -> NewEvent:
    return NewEvent(type=event_type, data=data or {"n": 1})


def test_envelope_fields_are_recorded(store_factory: StoreFactory) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    store = store_factory(clock)
    event_id = uuid.uuid4()
    occurred = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    result = store.append(
        "cart-1",
        [
            NewEvent(
                type="ItemAdded",
                data={"sku": "tea", "qty": 2, "note": "grüner Tee"},
                metadata={"actor": "alice", "causation_id": "cmd-7", "channel": "web"},
                event_id=event_id,
                schema_version=2,
                occurred_at=occurred,
            ),
            ev("ItemRemoved", sku="tea"),
        ],
        expected_version=NO_STREAM,
    )
    assert result.stream_version == 1
    assert len(result.global_positions) == 2
    assert result.global_positions[0] < result.global_positions[1]
    first, second = store.read_stream("cart-1")
    assert first.event_id == event_id
    assert (first.stream, first.stream_version, first.type) == ("cart-1", 0, "ItemAdded")
    assert first.global_position == result.global_positions[0]
    assert first.data == {"sku": "tea", "qty": 2, "note": "grüner Tee"}
    assert first.schema_version == 2
    assert first.actor == "alice"
    assert first.causation_id == "cmd-7"
    assert first.metadata["channel"] == "web"
    assert first.recorded_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert first.occurred_at == occurred
    assert second.occurred_at == second.recorded_at  # business time defaults to recorded time
    # One append is one business operation: both events share the first event's id as correlation.
    assert first.correlation_id == second.correlation_id == str(event_id)
    assert first.category == "cart"


def test_typed_event_data_is_stored_as_readable_json(store: EventStore) -> None:
    @dataclasses.dataclass
    class ItemAdded:
        sku: str
        qty: int

    class PriceChanged(msgspec.Struct):
        sku: str
        price_cents: int

    store.append("cart-9", [NewEvent(type="ItemAdded", data=ItemAdded("tea", 3))])
    store.append("product-tea", [NewEvent(type="PriceChanged", data=PriceChanged("tea", 450))])
    assert store.read_stream("cart-9")[0].json_data == '{"sku":"tea","qty":3}'
    assert store.read_stream("product-tea")[0].data == {"sku": "tea", "price_cents": 450}


class TestExpectedVersion:
    def test_no_stream(self, store: EventStore) -> None:
        assert store.append("s-1", ev(), NO_STREAM).stream_version == 0
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append("s-1", ev(), NO_STREAM)
        assert caught.value.stream == "s-1"
        assert caught.value.expected is NO_STREAM
        assert caught.value.actual == 0

    def test_stream_exists(self, store: EventStore) -> None:
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append("s-2", ev(), STREAM_EXISTS)
        assert caught.value.actual is None
        store.append("s-2", ev())
        assert store.append("s-2", ev(), STREAM_EXISTS).stream_version == 1

    def test_exact(self, store: EventStore) -> None:
        store.append("s-3", [ev(), ev(), ev()])
        assert store.append("s-3", ev(), 2).stream_version == 3
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append("s-3", ev(), 2)
        assert (caught.value.expected, caught.value.actual) == (2, 3)
        assert "expected 2, found version 3" in str(caught.value)
        with pytest.raises(WrongExpectedVersion):
            store.append("s-new", ev(), 0)

    def test_any(self, store: EventStore) -> None:
        assert store.append("s-4", ev(), ANY).stream_version == 0
        assert store.append("s-4", ev(), ANY).stream_version == 1

    @pytest.mark.parametrize("bad", [-1, -5, "2", 1.5, True, None])
    def test_invalid_expectation_is_refused(self, store: EventStore, bad: object) -> None:
        with pytest.raises(InvalidExpectedVersion):
            store.append("s-5", ev(), bad)  # type: ignore[arg-type]
        with pytest.raises(StreamNotFound):
            store.read_stream("s-5")

    def test_empty_batch_checks_expectation_and_writes_nothing(self, store: EventStore) -> None:
        result = store.append("s-6", [], NO_STREAM)
        assert result.global_positions == () and result.stream_version is None
        store.append("s-6", ev())
        with pytest.raises(WrongExpectedVersion):
            store.append("s-6", [], 5)
        assert store.append("s-6", [], 0).stream_version == 0
        assert len(store.read_stream("s-6")) == 1


class TestAllOrNothing:
    def test_a_bad_event_rejects_the_whole_batch(self, store: EventStore) -> None:
        with pytest.raises(EventDataNotSerializable) as caught:
            store.append("s-1", [ev(), NewEvent(type="Bad", data={"when": object()})])
        assert caught.value.event_type == "Bad"
        with pytest.raises(StreamNotFound):
            store.read_stream("s-1")
        assert store.head_position() == 0

    def test_a_failed_stream_rejects_a_multi_stream_append(self, store: EventStore) -> None:
        store.append("account-b", ev())
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append_many(
                [
                    AppendRequest("account-a", [ev("Debited")], NO_STREAM),
                    AppendRequest("account-b", [ev("Credited")], NO_STREAM),
                ]
            )
        assert caught.value.stream == "account-b"
        with pytest.raises(StreamNotFound):
            store.read_stream("account-a")
        assert store.stream_version("account-b") == 0

    def test_multi_stream_append_commits_together(self, store: EventStore) -> None:
        results = store.append_many(
            [
                AppendRequest("account-a", [ev("Debited")], NO_STREAM),
                AppendRequest("account-b", [ev("Credited"), ev("Noted")], NO_STREAM),
            ]
        )
        assert [r.stream_version for r in results] == [0, 1]
        positions = [p for r in results for p in r.global_positions]
        assert positions == sorted(positions) and len(set(positions)) == 3

    def test_unit_of_work_rolls_back_appends_and_checkpoints(self, store: EventStore) -> None:
        with pytest.raises(RuntimeError), store.transaction() as uow:
            uow.append("s-1", ev())
            uow.save_checkpoint("reader", 1)
            raise RuntimeError("handler failed")
        assert store.head_position() == 0
        assert store.load_checkpoint("reader") is None
        with store.transaction() as uow:
            uow.append("s-1", ev())
            uow.save_checkpoint("reader", 1)
        assert store.load_checkpoint("reader") == 1
        assert store.stream_version("s-1") == 0

    def test_unit_of_work_after_a_failed_step_cannot_commit(self, store: EventStore) -> None:
        from chronik.errors import TransactionAborted

        store.append("s-1", ev())
        with pytest.raises(TransactionAborted), store.transaction() as uow:
            uow.append("s-2", ev())
            with pytest.raises(WrongExpectedVersion):
                uow.append("s-1", ev(), NO_STREAM)
        assert store.stream_version("s-2") is None


class TestIdempotentRetry:
    def test_same_ids_same_place_is_acknowledged(self, store: EventStore) -> None:
        batch = [NewEvent(type="A", data={"i": i}, event_id=uuid.uuid4()) for i in range(3)]
        first = store.append("s-1", batch, NO_STREAM)
        again = store.append("s-1", batch, NO_STREAM)
        assert again.already_recorded and not first.already_recorded
        assert again.global_positions == first.global_positions
        assert again.stream_version == first.stream_version == 2
        assert len(store.read_stream("s-1")) == 3

    def test_retry_with_exact_version_and_with_any(self, store: EventStore) -> None:
        store.append("s-1", ev())
        batch = [NewEvent(type="A", data={}, event_id=uuid.uuid4())]
        first = store.append("s-1", batch, 0)
        store.append("s-1", ev())  # somebody else wrote after us
        assert store.append("s-1", batch, 0).global_positions == first.global_positions
        assert store.append("s-1", batch, ANY).global_positions == first.global_positions
        assert store.append("s-1", batch, STREAM_EXISTS).already_recorded
        assert len(store.read_stream("s-1")) == 3

    def test_same_id_elsewhere_is_an_error(self, store: EventStore) -> None:
        event_id = uuid.uuid4()
        store.append("s-1", NewEvent(type="A", data={}, event_id=event_id))
        with pytest.raises(DuplicateEventId) as caught:
            store.append("s-2", NewEvent(type="A", data={}, event_id=event_id))
        assert caught.value.recorded_in == "s-1"
        with pytest.raises(DuplicateEventId):  # same stream, but not where this append would go
            store.append("s-1", [ev(), NewEvent(type="A", data={}, event_id=event_id)], 0)
        with pytest.raises(StreamNotFound):
            store.read_stream("s-2")
        assert len(store.read_stream("s-1")) == 1

    def test_partial_overlap_is_an_error(self, store: EventStore) -> None:
        a, b = uuid.uuid4(), uuid.uuid4()
        store.append("s-1", NewEvent(type="A", data={}, event_id=a), NO_STREAM)
        with pytest.raises(DuplicateEventId):
            store.append(
                "s-1",
                [NewEvent(type="A", data={}, event_id=a), NewEvent(type="A", data={}, event_id=b)],
                NO_STREAM,
            )
        assert store.stream_version("s-1") == 0

    def test_same_id_twice_in_one_batch_is_an_error(self, store: EventStore) -> None:
        event_id = uuid.uuid4()
        with pytest.raises(DuplicateEventId):
            store.append("s-1", [NewEvent(type="A", data={}, event_id=event_id)] * 2)
        assert store.head_position() == 0


class TestReading:
    @pytest.fixture
    def filled(self, store_factory: StoreFactory) -> tuple[EventStore, ManualClock, list[datetime]]:
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        store = store_factory(clock)
        times = []
        for i in range(10):
            times.append(clock())
            store.append(
                "cart-7",
                NewEvent(type="Tick", data={"i": i}, occurred_at=datetime(2020, 1, 1 + i, tzinfo=UTC)),
            )
            store.append(f"product-{i % 3}", ev("PriceChanged", i=i))
            store.append("order-1", ev("OrderNoted", i=i))
            clock.advance(timedelta(hours=1))
        return store, clock, times

    def test_forwards_backwards_ranges_and_limits(
        self, filled: tuple[EventStore, ManualClock, list[datetime]]
    ) -> None:
        store, _, _ = filled
        assert [e.data["i"] for e in store.read_stream("cart-7")] == list(range(10))
        assert [e.stream_version for e in store.read_stream("cart-7", from_version=3, to_version=5)] == [
            3,
            4,
            5,
        ]
        assert [e.stream_version for e in store.read_stream("cart-7", backwards=True, limit=3)] == [9, 8, 7]
        assert [
            e.stream_version for e in store.read_stream("cart-7", backwards=True, from_version=4, limit=2)
        ] == [4, 3]
        assert [e.stream_version for e in store.read_stream("cart-7", from_version=8, limit=5)] == [8, 9]
        assert store.read_stream("cart-7", from_version=50) == []
        assert store.stream_version("cart-7") == 9

    def test_up_to_a_recorded_time_and_a_business_time(
        self, filled: tuple[EventStore, ManualClock, list[datetime]]
    ) -> None:
        store, _, times = filled
        assert [e.data["i"] for e in store.read_stream("cart-7", recorded_until=times[4])] == [0, 1, 2, 3, 4]
        assert [
            e.data["i"] for e in store.read_stream("cart-7", occurred_until=datetime(2020, 1, 3, tzinfo=UTC))
        ] == [0, 1, 2]

    def test_whole_log_in_global_order_with_filters(
        self, filled: tuple[EventStore, ManualClock, list[datetime]]
    ) -> None:
        store, _, _ = filled
        log = store.read_all()
        assert len(log) == 30
        positions = [e.global_position for e in log]
        assert positions == sorted(positions) and len(set(positions)) == 30
        assert store.head_position() == positions[-1]
        tail = store.read_all(positions[20])
        assert [e.global_position for e in tail] == positions[20:]
        assert [e.global_position for e in store.read_all(positions[5], limit=4)] == positions[5:9]
        assert [e.global_position for e in store.read_all(0, to_position=positions[2])] == positions[:3]
        products = store.read_all(categories=["product"])
        assert len(products) == 10 and {e.category for e in products} == {"product"}
        mixed = store.read_all(categories=["product", "order"], event_types=["OrderNoted"])
        assert len(mixed) == 10 and {e.type for e in mixed} == {"OrderNoted"}
        assert [e.global_position for e in store.iter_all(batch_size=7)] == positions

    def test_missing_stream(self, store: EventStore) -> None:
        with pytest.raises(StreamNotFound) as caught:
            store.read_stream("nobody-1")
        assert caught.value.stream == "nobody-1"
        assert store.stream_version("nobody-1") is None
        assert store.read_all() == []
        assert store.head_position() == 0

    def test_list_streams_and_correlation(self, store: EventStore) -> None:
        result = store.append("cart-1", [ev(), ev()])
        store.append("cart-2", NewEvent(type="A", data={}, metadata={"correlation_id": "op-1"}))
        store.append("payment-1", NewEvent(type="B", data={}, metadata={"correlation_id": "op-1"}))
        infos = store.list_streams(prefix="cart-")
        assert [(i.stream, i.version, i.event_count) for i in infos] == [("cart-1", 1, 2), ("cart-2", 0, 1)]
        assert [e.stream for e in store.read_correlated("op-1")] == ["cart-2", "payment-1"]
        first_id = store.read_stream("cart-1")[0].event_id
        assert [e.global_position for e in store.read_correlated(str(first_id))] == list(
            result.global_positions
        )


class TestBadInput:
    @pytest.mark.parametrize("name", ["", " cart", "cart 1", "a\nb", "-cart", "x" * 256, 42])
    def test_stream_names(self, store: EventStore, name: object) -> None:
        with pytest.raises(InvalidStreamName):
            store.append(name, ev())  # type: ignore[arg-type]
        assert store.head_position() == 0

    @pytest.mark.parametrize("event_type", ["", "1abc", "has space", None])
    def test_event_types(self, store: EventStore, event_type: object) -> None:
        with pytest.raises(InvalidEventType):
            store.append("s-1", NewEvent(type=event_type, data={}))  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "data",
        [
            [1, 2],
            "text",
            3,
            None,
            {"x": float("nan")},
            {"x": [float("inf")]},
            {"when": object()},
        ],
    )
    def test_data_must_be_a_lossless_json_object(self, store: EventStore, data: object) -> None:
        with pytest.raises(EventDataNotSerializable) as caught:
            store.append("s-1", [ev(), NewEvent(type="Bad", data=data)])
        assert caught.value.event_type in ("Bad", "ItemAdded")
        assert store.head_position() == 0

    def test_metadata_must_be_json(self, store: EventStore) -> None:
        with pytest.raises(EventDataNotSerializable) as caught:
            store.append("s-1", NewEvent(type="A", data={}, metadata={"actor": object()}))
        assert caught.value.field == "metadata"

    @pytest.mark.parametrize(
        "metadata",
        [{"note": "a\x00b"}, {"a\x00": 1}, {"deep": [{"x": "\x00"}]}, {"actor": "ann", "n": "\x00"}],
    )
    def test_metadata_must_not_hold_nul(self, store: EventStore, metadata: dict[str, object]) -> None:
        """PostgreSQL cannot query a metadata string holding U+0000 (`->>` fails for the whole
        table), so no backend records one; data may hold it (the stores never query data)."""
        with pytest.raises(EventDataNotSerializable, match="NUL") as caught:
            store.append("s-1", [ev(), NewEvent(type="A", data={}, metadata=metadata)])
        assert caught.value.field == "metadata"
        assert store.head_position() == 0
        store.append("s-1", NewEvent(type="A", data={"raw": "a\x00b"}, metadata={"note": "a\\u0000b"}))
        assert store.read_stream("s-1")[0].data == {"raw": "a\x00b"}
        assert store.read_stream("s-1")[0].metadata["note"] == "a\\u0000b"  # a backslash, then u0000

    def test_event_too_large_names_the_limit(self, store: EventStore) -> None:
        with pytest.raises(EventTooLarge) as caught:
            store.append(
                "s-1", [ev(), NewEvent(type="Big", data={"blob": "x" * (store.max_event_bytes + 1)})]
            )
        assert caught.value.limit == store.max_event_bytes
        assert caught.value.size > caught.value.limit
        assert str(store.max_event_bytes) in str(caught.value)
        assert store.head_position() == 0

    def test_naive_business_time_is_refused(self, store: EventStore) -> None:
        with pytest.raises(EventDataNotSerializable):
            store.append("s-1", NewEvent(type="A", data={}, occurred_at=datetime(2020, 1, 1)))

    @pytest.mark.parametrize(
        "occurred",
        [
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),  # UTC: the day before year 1
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),  # UTC: year 10000
            datetime(1, 1, 1, 12, tzinfo=UTC),  # representable, but on the calendar's first day
        ],
    )
    def test_a_business_time_on_the_calendars_first_or_last_day_is_refused_naming_the_range(
        self, store: EventStore, occurred: datetime
    ) -> None:
        with pytest.raises(TimeOutOfRange, match=r"occurred_at .* from 0001-01-02 to 9999-12-30"):
            store.append("s-1", [ev(), NewEvent(type="A", data={}, occurred_at=occurred)])
        assert store.head_position() == 0  # the whole batch is refused

    def test_the_extreme_business_times_taken_are_stored_and_read_back_in_utc(
        self, store: EventStore
    ) -> None:
        first = datetime(1, 1, 2, tzinfo=timezone(timedelta(hours=14)))
        last = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-14)))
        store.append("s-1", [NewEvent(type="A", data={}, occurred_at=moment) for moment in (first, last)])
        read = store.read_stream("s-1")
        assert [event.occurred_at for event in read] == [first, last]
        utc = [event.occurred_at.astimezone(UTC).isoformat() for event in read]
        assert utc == ["0001-01-01T10:00:00+00:00", "9999-12-31T13:59:59.999999+00:00"]
        assert len(store.read_stream("s-1", occurred_until=last, recorded_until=read[1].recorded_at)) == 2

    def test_a_read_bound_past_the_calendar_is_an_input_error_not_an_overflow(
        self, store: EventStore
    ) -> None:
        store.append("s-1", ev())
        past_the_end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
        try:
            found = store.read_stream("s-1", recorded_until=past_the_end)
        except TimeOutOfRange as refused:  # SQLite formats the bound as UTC text: refused
            assert "from 0001-01-02 to 9999-12-30" in str(refused)
        else:  # the others compare datetimes: every event is before it
            assert len(found) == 1


def test_recorded_at_never_decreases_along_the_log(store_factory: StoreFactory) -> None:
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))
    store = store_factory(clock)
    store.append("s-1", ev())
    clock.advance(-3600)  # the machine's clock is set back an hour
    store.append("s-2", ev())
    first, second = store.read_all()
    assert second.recorded_at >= first.recorded_at


def test_checkpoints(store: EventStore) -> None:
    assert store.load_checkpoint("projector") is None
    with store.transaction() as uow:
        uow.save_checkpoint("projector", 41)
    with store.transaction() as uow:
        uow.save_checkpoint("projector", 42)
    assert store.load_checkpoint("projector") == 42


def test_snapshots_are_a_cache(store: EventStore) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for version in (9, 19, 29):
        store.save_snapshot(
            Snapshot(
                stream="cart-1",
                stream_version=version,
                aggregate_type="Cart",
                schema_version=1,
                json_state=f'{{"v":{version}}}',
                recorded_at=now,
            )
        )
    store.save_snapshot(
        Snapshot(
            stream="cart-1",
            stream_version=39,
            aggregate_type="Cart",
            schema_version=2,
            json_state="{}",
            recorded_at=now,
        )
    )
    latest = store.load_snapshot("cart-1", schema_version=1)
    assert latest is not None and latest.stream_version == 29 and latest.json_state == '{"v":29}'
    at_20 = store.load_snapshot("cart-1", schema_version=1, at_or_before=20)
    assert at_20 is not None and at_20.stream_version == 19
    assert store.load_snapshot("cart-1", schema_version=1, at_or_before=5) is None
    assert store.load_snapshot("cart-1", schema_version=3) is None
    assert store.delete_snapshots("cart-1") == 4
    assert store.load_snapshot("cart-1", schema_version=1) is None


def test_nested_units_of_work_are_refused(store: EventStore) -> None:
    from chronik.errors import ChronikError

    with store.transaction(), pytest.raises(ChronikError, match="do not nest"), store.transaction():
        pass


def test_generated_event_ids_are_time_ordered_uuid7() -> None:
    from chronik.events.envelope import new_event_id

    ids = [new_event_id() for _ in range(2000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)
    milliseconds = [i.int >> 80 for i in ids]
    assert milliseconds == sorted(milliseconds)


@pytest.mark.parametrize("event_type", [["list"], {"a": 1}, 42])
def test_unhashable_or_odd_event_types_are_refused_with_a_clear_error(
    store: EventStore, event_type: object
) -> None:
    with pytest.raises(InvalidEventType):
        store.append("s-1", NewEvent(type=event_type, data={}))  # type: ignore[arg-type]
    assert store.head_position() == 0
