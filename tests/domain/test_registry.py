"""The registry finds an aggregate class by a stream's category, for tools that only know the stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chronik.clock import ManualClock
from chronik.domain import AggregateRegistry, UnknownAggregateType
from chronik.errors import AggregateNotFound, EventDoesNotFit, InvalidInput
from chronik.events import NewEvent
from tests.conftest import StoreFactory
from tests.domain.accounts import Account


def test_hydrate_stream_now_and_as_of_the_past(store_factory: StoreFactory) -> None:
    clock = ManualClock(datetime(2026, 2, 1, tzinfo=UTC))
    store = store_factory(clock)
    registry = AggregateRegistry()
    registry.register(Account)
    repository = registry.repository(store)
    account = Account("a1")
    account.open("ann")
    repository.save(account)
    opened_at = clock()
    clock.advance(timedelta(hours=1))
    account.deposit(40)
    repository.save(account)

    aggregate, state = registry.hydrate_stream(store, "account-a1")
    assert isinstance(aggregate, Account)
    assert state == {"owner": "ann", "balance": 40, "movements": [40]}
    assert registry.hydrate_stream(store, "account-a1", version=0)[1]["balance"] == 0
    assert registry.hydrate_stream(store, "account-a1", recorded_at=opened_at)[1]["owner"] == "ann"
    assert registry.hydrate_stream(store, "account-a1", occurred_at=opened_at)[1]["movements"] == []


def test_unknown_categories_and_clashes_are_clear_errors(store_factory: StoreFactory) -> None:
    registry = AggregateRegistry()
    assert registry.register(Account) is Account
    assert registry.register(Account) is Account
    with pytest.raises(UnknownAggregateType, match=r"'invoice' \(registered: account\)"):
        registry.hydrate_stream(store_factory(), "invoice-1")

    class OtherAccount(Account):
        pass

    with pytest.raises(InvalidInput, match="already registered for Account"):
        registry.register(OtherAccount)
    with pytest.raises(AggregateNotFound, match="no aggregate id"):  # a stream, but no aggregate
        registry.hydrate_stream(store_factory(), "account")


def test_registering_an_aggregate_registers_its_events_with_the_shared_codec(
    store_factory: StoreFactory,
) -> None:
    registry = AggregateRegistry()
    registry.register(Account)
    assert {registry.codec.type_name(cls) for cls in Account.appliers} == {"Opened", "Deposited", "Withdrawn"}
    assert registry.repository(store_factory()).codec is registry.codec


def test_events_for_an_aggregates_stream_must_be_ones_it_can_apply() -> None:
    """What the HTTP API's generic append checks: such an event would make every later load fail."""
    registry = AggregateRegistry()
    registry.register(Account)
    registry.check_events("account-a1", [NewEvent(type="Deposited", data={"amount": 5})])
    registry.check_events("invoice-1", [NewEvent(type="Anything", data={})])  # no aggregate owns it
    with pytest.raises(
        EventDoesNotFit, match=r"'Bogus' does not fit stream 'account-a1' \(aggregate Account\)"
    ):
        registry.check_events("account-a1", [NewEvent(type="Bogus", data={})])
    with pytest.raises(EventDoesNotFit, match=r"its data: .*amount"):
        registry.check_events("account-a1", [NewEvent(type="Deposited", data={"amount": "five"})])
    with pytest.raises(EventDoesNotFit, match="schema version 2"):
        registry.check_events(
            "account-a1", [NewEvent(type="Deposited", data={"amount": 5}, schema_version=2)]
        )
