"""Aggregates decide and record; the repository saves with optimistic concurrency and loads them back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from chronik.clock import ManualClock
from chronik.domain import (
    Aggregate,
    AggregateNotFound,
    EventCodec,
    HistoricalAggregate,
    NoApplier,
    Repository,
    applies,
)
from chronik.errors import InvalidInput, WrongExpectedVersion
from chronik.events.envelope import NewEvent
from chronik.store import EventStore
from tests.conftest import StoreFactory
from tests.domain.accounts import Account, AccountState, Deposited, InsufficientFunds, Opened, Withdrawn


def opened_account(repository: Repository, id: str = "a1", deposits: tuple[int, ...] = (10,)) -> Account:
    account = Account(id)
    account.open("ann")
    for amount in deposits:
        account.deposit(amount)
    repository.save(account)
    return account


def test_record_applies_at_once_and_keeps_events_pending() -> None:
    account = Account("a1")
    assert (account.version, account.stream, account.pending_events) == (None, "account-a1", ())
    account.open("ann")
    account.deposit(5)
    assert account.state == AccountState("ann", 5, [5])
    assert account.pending_events == (Opened("ann"), Deposited(5))
    with pytest.raises(InsufficientFunds, match="cannot withdraw 6 from a balance of 5"):
        account.withdraw(6)
    assert len(account.pending_events) == 2  # a refused command records nothing


def test_save_then_load_gives_the_same_state(store: EventStore) -> None:
    repository = Repository(store)
    account = opened_account(repository, deposits=(10, 20))
    assert (account.version, account.pending_events) == (2, ())
    account.withdraw(5)
    result = repository.save(account, metadata={"actor": "ann"})
    assert (result.stream_version, account.version) == (3, 3)
    loaded = repository.load(Account, "a1", use_snapshots=False)
    assert (loaded.state, loaded.version, loaded.read_only) == (
        AccountState("ann", 25, [10, 20, -5]),
        3,
        False,
    )
    stored = store.read_stream("account-a1")
    assert [event.type for event in stored] == ["Opened", "Deposited", "Deposited", "Withdrawn"]
    assert stored[-1].actor == "ann"


def test_a_save_on_stale_state_is_refused_and_writes_nothing(store: EventStore) -> None:
    repository = Repository(store)
    opened_account(repository)
    first, second = repository.load(Account, "a1"), repository.load(Account, "a1")
    first.deposit(1)
    repository.save(first)
    second.withdraw(10)
    with pytest.raises(WrongExpectedVersion) as caught:
        repository.save(second)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert second.pending_events == (Withdrawn(10),)
    assert store.stream_version("account-a1") == 2


def test_a_new_aggregate_cannot_overwrite_an_existing_stream(store: EventStore) -> None:
    repository = Repository(store)
    opened_account(repository)
    with pytest.raises(WrongExpectedVersion):
        opened_account(repository)


def test_execute_retries_a_conflict_on_fresh_state(store: EventStore) -> None:
    repository = Repository(store)
    opened_account(repository, deposits=(10,))
    other_writer = Repository(store)
    runs: list[int] = []
    conflicts: list[int] = []

    def withdraw_ten(account: Account) -> None:
        runs.append(account.state.balance)
        if len(runs) == 1:  # a concurrent writer slips in between our load and our save
            concurrent = other_writer.load(Account, "a1")
            concurrent.deposit(5)
            other_writer.save(concurrent)
        account.withdraw(10)

    account, result = repository.execute(
        Account, "a1", withdraw_ten, on_conflict=lambda error, attempt: conflicts.append(attempt)
    )
    assert runs == [10, 15]
    assert conflicts == [1]
    assert (account.state.balance, result.stream_version) == (5, 3)
    assert repository.load(Account, "a1").state.movements == [10, 5, -10]


def test_execute_lets_a_domain_error_on_fresh_state_through(store: EventStore) -> None:
    repository = Repository(store)
    opened_account(repository, deposits=(10,))

    def withdraw_all_twice(account: Account) -> None:
        if account.state.balance == 10:
            concurrent = repository.load(Account, "a1")
            concurrent.withdraw(10)
            repository.save(concurrent)
        account.withdraw(10)

    with pytest.raises(InsufficientFunds):
        repository.execute(Account, "a1", withdraw_all_twice)
    assert store.stream_version("account-a1") == 2


def test_execute_gives_up_after_the_last_attempt(store: EventStore) -> None:
    repository = Repository(store)
    opened_account(repository)

    def always_raced(account: Account) -> None:
        concurrent = repository.load(Account, "a1")
        concurrent.deposit(1)
        repository.save(concurrent)
        account.deposit(100)

    with pytest.raises(WrongExpectedVersion):
        repository.execute(Account, "a1", always_raced, attempts=2)
    assert repository.load(Account, "a1").state.balance == 12


def test_execute_can_create_and_otherwise_needs_the_stream(store: EventStore) -> None:
    repository = Repository(store)
    with pytest.raises(AggregateNotFound, match="account-new"):
        repository.execute(Account, "new", lambda account: account.open("bo"))
    account, result = repository.execute(Account, "new", lambda account: account.open("bo"), create=True)
    assert (account.state.owner, result.stream_version) == ("bo", 0)


def test_loading_a_missing_stream_says_so(store: EventStore) -> None:
    with pytest.raises(AggregateNotFound, match="'account-ghost'"):
        Repository(store).load(Account, "ghost")


def test_time_travel_by_version_and_by_recorded_time(store_factory: StoreFactory) -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    store = store_factory(clock)
    repository = Repository(store)
    start = clock()
    account = opened_account(repository, deposits=(10,))  # versions 0, 1 at start
    for amount in (20, 30):
        clock.advance(60)
        account.deposit(amount)
        repository.save(account)  # version 2 at +60 s, 3 at +120 s
    assert repository.load(Account, "a1", version=2).state.balance == 30
    assert repository.load(Account, "a1", version=0).state == AccountState("ann", 0, [])
    assert repository.load(Account, "a1", version=99).version == 3
    assert repository.load(Account, "a1", recorded_at=start).state.balance == 10
    assert repository.load(Account, "a1", recorded_at=start + timedelta(seconds=90)).version == 2
    assert repository.load(Account, "a1", recorded_at=start + timedelta(days=9)).state.balance == 60
    with pytest.raises(AggregateNotFound, match="did not exist yet"):
        repository.load(Account, "a1", recorded_at=start - timedelta(seconds=1))


def test_time_travel_by_business_time_follows_occurred_at_not_stream_order(store: EventStore) -> None:
    repository = Repository(store)
    day = datetime(2026, 5, 1, tzinfo=UTC)
    account = Account("a1")
    account.open("ann")
    account.deposit(1, occurred_at=day)
    account.deposit(100, occurred_at=day + timedelta(days=10))
    account.deposit(7, occurred_at=day + timedelta(days=2))  # entered late, back-dated
    repository.save(account)
    # "open" occurred when it was recorded: now, after all these business dates.
    view = repository.load(Account, "a1", occurred_at=day + timedelta(days=5))
    assert (view.state.movements, view.version, view.read_only) == ([1, 7], 3, True)
    with pytest.raises(AggregateNotFound, match="occurred at or before"):
        repository.load(Account, "a1", occurred_at=day - timedelta(days=1))


def test_a_view_of_the_past_cannot_be_saved(store: EventStore) -> None:
    repository = Repository(store)
    opened_account(repository, deposits=(1, 2))
    past = repository.load(Account, "a1", version=1)
    past.deposit(3)
    with pytest.raises(HistoricalAggregate, match="as of the past"):
        repository.save(past)
    assert store.stream_version("account-a1") == 2


def test_time_travel_bounds_combine_and_a_version_must_be_valid(store_factory: StoreFactory) -> None:
    """Version, recorded and business time each keep the events within them (they were refused
    together); recorded with business time is the bitemporal view: what was true then, as known."""
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))
    store = store_factory(clock)
    repository = Repository(store)
    day = datetime(2026, 1, 1, tzinfo=UTC)
    account = Account("a1")
    account.open("ann")  # occurred when recorded: 2026-05-01
    account.deposit(1, occurred_at=day)
    repository.save(account)  # versions 0, 1 at 2026-05-01
    known_before = clock()
    clock.advance(timedelta(days=1))
    account.deposit(7, occurred_at=day + timedelta(days=2))  # entered late, back-dated
    account.deposit(100, occurred_at=day + timedelta(days=10))
    repository.save(account)  # versions 2, 3 at 2026-05-02
    later = clock() + timedelta(days=1)
    assert repository.load(Account, "a1", occurred_at=later).state.movements == [1, 7, 100]
    as_known = repository.load(Account, "a1", occurred_at=later, recorded_at=known_before)
    assert (as_known.state.movements, as_known.version, as_known.read_only) == ([1], 1, True)
    up_to_2 = repository.load(Account, "a1", occurred_at=later, version=2)
    assert up_to_2.state.movements == [1, 7]
    assert repository.load(Account, "a1", version=3, recorded_at=known_before).version == 1
    assert repository.load(Account, "a1", version=2, recorded_at=later).version == 2
    with pytest.raises(InvalidInput, match=">= 0"):
        repository.load(Account, "a1", version=-1)


def test_an_event_without_an_applier_is_a_clear_error(store: EventStore) -> None:
    class Frozen(msgspec.Struct):
        reason: str

    account = Account("a1")
    with pytest.raises(NoApplier, match=r"Account has no applier for Frozen"):
        account.record(Frozen("audit"))
    codec = EventCodec()
    codec.register(Frozen)
    store.append("account-a1", [codec.to_new_event(Frozen("audit"))])
    with pytest.raises(NoApplier, match="Frozen"):
        Repository(store, codec).load(Account, "a1")


def test_hydration_upcasts_old_events_through_the_codec(store: EventStore) -> None:
    class DepositedV2(msgspec.Struct):
        event_type = "Deposited"
        schema_version = 2
        cents: int

    class CentsState(msgspec.Struct):
        cents: int = 0

    class CentAccount(Aggregate[CentsState]):
        category = "centaccount"

        @applies(DepositedV2)
        def _deposited(self, event: DepositedV2) -> None:
            self.state.cents += event.cents

    codec = EventCodec()
    codec.add_upcaster("Deposited", 1, lambda data: {"cents": data["amount"] * 100})
    store.append("centaccount-1", [NewEvent(type="Deposited", data={"amount": 2})])
    repository = Repository(store, codec)
    account = repository.load(CentAccount, "1")
    account.record(DepositedV2(50))
    repository.save(account)
    assert repository.load(CentAccount, "1").state.cents == 250
    assert [(e.type, e.schema_version) for e in store.read_stream("centaccount-1")] == [
        ("Deposited", 1),
        ("Deposited", 2),
    ]


def test_aggregate_classes_are_checked_when_defined() -> None:
    with pytest.raises(InvalidInput, match="without '-'"):

        class Bad(Aggregate[AccountState]):
            category = "has-dash"

    with pytest.raises(InvalidInput, match="msgspec Struct"):

        class NotStruct(Aggregate[dict[str, Any]]):  # type: ignore[type-var]
            category = "x"

    with pytest.raises(InvalidInput, match="non-empty string"):
        Account("")


def test_an_aggregate_event_id_is_fixed_when_recorded_so_a_resent_save_is_not_doubled(
    store: EventStore,
) -> None:
    repository = Repository(store)
    account = Account("a1")
    account.open("ann")
    pending = account.pending
    first = repository.save(account)
    # The caller did not get the answer (a lost connection) and re-sends the same events.
    account._pending.extend(pending)
    account.version = None
    again = repository.save(account)
    assert again.already_recorded and again.global_positions == first.global_positions
    assert store.stream_version("account-a1") == 0


def test_a_save_can_depend_on_what_the_decision_read(store: EventStore) -> None:
    repository = Repository(store)
    opened_account(repository, "a1", deposits=(1,))
    opened_account(repository, "a2", deposits=(50,))
    source = repository.load(Account, "a2")
    target = repository.load(Account, "a1")
    target.deposit(source.state.balance)  # a decision on a2's balance as read just now
    concurrent = repository.load(Account, "a2")
    concurrent.withdraw(50)
    repository.save(concurrent)
    with pytest.raises(WrongExpectedVersion) as caught:
        repository.save(target, depends_on=[source])
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("account-a2", 1, 2)
    assert store.stream_version("account-a1") == 1  # nothing written

    def copy_balance(account: Account) -> list[Account]:
        fresh_source = repository.load(Account, "a2")
        account.deposit(fresh_source.state.balance + 1)
        return [fresh_source]

    account, _ = repository.execute(Account, "a1", copy_balance)
    assert account.state.movements == [1, 1]


def test_stored_data_that_no_longer_fits_names_the_stream_and_version(store: EventStore) -> None:
    from chronik.errors import EventDataInvalid

    store.append("account-a1", [NewEvent(type="Opened", data={"owner": "ann"})])
    store.append("account-a1", [NewEvent(type="Deposited", data={"amount": "ten"})])
    with pytest.raises(EventDataInvalid, match=r"'Deposited'.*account-a1 at version 1"):
        Repository(store).load(Account, "a1")


def test_an_aggregate_without_a_state_type_says_how_to_declare_it() -> None:
    class Untyped(Aggregate):  # type: ignore[type-arg]
        category = "untyped"

    with pytest.raises(InvalidInput, match=r"write class Untyped\(Aggregate\[MyState\]\)"):
        Untyped("1")
