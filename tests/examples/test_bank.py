"""The seed's bank on every backend: account rules, idempotent commands, the transfer saga with its
compensation, the time machine by business and by recorded time, and the books checked."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chronik.clock import ManualClock
from chronik.errors import AggregateNotFound
from chronik.examples.bank import (
    Account,
    AccountBalances,
    AccountNotOpen,
    BalanceNotZero,
    Bank,
    CommandIdReused,
    CommandResult,
    InsufficientFunds,
    InvalidAmount,
    InvalidTransfer,
    MonthlyStatements,
    queries,
)
from chronik.projections import reconcile
from chronik.store import EventStore
from tests.conftest import StoreFactory
from tests.raw_sql import execute_behind_the_store


def open_two(bank: Bank, *, deposit: int = 10_000) -> None:
    bank.open_account("ann", "Ann", command_id="open-ann")
    bank.open_account("bob", "Bob", command_id="open-bob")
    bank.deposit("ann", deposit, command_id="dep-ann")


def test_an_account_never_goes_below_its_overdraft_limit(store: EventStore) -> None:
    bank = Bank(store)
    open_two(bank, deposit=1_000)
    with pytest.raises(InsufficientFunds) as refused:
        bank.withdraw("ann", 1_001, command_id="w1")
    assert (refused.value.balance, refused.value.amount) == (1_000, 1_001)
    assert str(refused.value).endswith("€10.01 would take it below zero")
    bank.withdraw("ann", 1_000, command_id="w2")
    bank.set_overdraft_limit("ann", 500, command_id="limit")
    bank.withdraw("ann", 500, command_id="w3")  # down to -500: allowed by the limit
    with pytest.raises(InsufficientFunds, match=r"below -€5\.00, its overdraft limit"):
        bank.withdraw("ann", 1, command_id="w4")
    assert bank.account("ann").state.balance_cents == -500
    with pytest.raises(InvalidAmount):
        bank.deposit("ann", 0, command_id="zero")
    with pytest.raises(InvalidAmount):
        bank.deposit("ann", -5, command_id="negative")
    assert [e.type for e in store.read_stream("account-ann")] == [
        "AccountOpened",
        "FundsDeposited",
        "FundsWithdrawn",
        "OverdraftLimitSet",
        "FundsWithdrawn",
    ]


def test_frozen_and_closed_accounts_refuse_money(store: EventStore) -> None:
    bank = Bank(store)
    open_two(bank)
    bank.freeze("bob", command_id="freeze-bob", reason="fraud check")
    with pytest.raises(AccountNotOpen):
        bank.deposit("bob", 100, command_id="d-bob")
    bank.unfreeze("bob", command_id="unfreeze-bob")
    bank.deposit("bob", 100, command_id="d-bob")
    with pytest.raises(BalanceNotZero):
        bank.close("bob", command_id="close-bob")
    bank.withdraw("bob", 100, command_id="w-bob")
    bank.close("bob", command_id="close-bob")
    with pytest.raises(AccountNotOpen):
        bank.deposit("bob", 100, command_id="d-bob-2")
    with pytest.raises(AggregateNotFound):
        bank.deposit("nobody", 100, command_id="d-nobody")
    assert bank.account("bob").state.status == "closed"


def test_a_retried_command_is_an_acknowledged_no_op(store: EventStore) -> None:
    bank = Bank(store)
    open_two(bank)
    first = bank.withdraw("ann", 3_000, command_id="atm-42")
    bank.deposit("ann", 1, command_id="other")  # the account moves on meanwhile
    again = bank.withdraw("ann", 3_000, command_id="atm-42")  # the client timed out and re-sent
    assert (first.already_done, again.already_done) == (False, True)
    assert bank.account("ann").state.balance_cents == 10_000 - 3_000 + 1
    assert bank.open_account("ann", "Ann", command_id="open-ann").already_done
    withdrawals = [e for e in store.read_stream("account-ann") if e.type == "FundsWithdrawn"]
    assert len(withdrawals) == 1 and withdrawals[0].metadata["command_id"] == "atm-42"


def test_a_command_id_reused_for_another_command_is_refused_and_records_nothing(store: EventStore) -> None:
    """Review finding: `_run` acknowledged any command whose id was used, dropping a different one."""
    bank = Bank(store)
    open_two(bank)
    bank.deposit("ann", 100, command_id="d1", description="cash")
    for other in (
        lambda: bank.deposit("ann", 999, command_id="d1", description="cash"),
        lambda: bank.deposit("ann", 100, command_id="d1", description="cheque"),
        lambda: bank.withdraw("ann", 50, command_id="d1"),
        lambda: bank.freeze("ann", command_id="d1"),
    ):
        with pytest.raises(CommandIdReused) as refused:
            other()
        assert refused.value.command_id == "d1" and refused.value.recorded["amount_cents"] == 100
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("command id 'd1' is already recorded in 'account-ann' for deposit(")
    assert "amount_cents=100" in message and "not freeze(" in message
    assert bank.deposit("ann", 100, command_id="d1", description="cash").already_done  # a true re-send
    assert bank.deposit("bob", 999, command_id="d1").already_done is False  # another account: another command
    assert [e.type for e in store.read_stream("account-ann")] == [
        "AccountOpened",
        "FundsDeposited",
        "FundsDeposited",
    ]
    assert bank.account("ann").state.balance_cents == 10_100

    with pytest.raises(CommandIdReused, match="'open-ann'"):
        bank.open_account("ann", "Someone else", command_id="open-ann")

    bank.transfer("t1", "ann", "bob", 10)
    for amount, target in ((90, "bob"), (10, "cat")):
        with pytest.raises(CommandIdReused, match="initiate_transfer") as refused:
            bank.transfer("t1", "ann", target, amount)
        assert refused.value.sent["amount_cents"] == amount and refused.value.recorded["amount_cents"] == 10
    assert bank.initiate_transfer("t1", "ann", "bob", 10).already_done
    assert bank.transfer_state("t1").state.amount_cents == 10
    assert (bank.account("ann").state.balance_cents, bank.account("bob").state.balance_cents) == (
        10_090,
        1_009,
    )
    assert queries.check_ledger(store).ok


def test_a_client_command_id_that_looks_like_a_transfer_step_never_takes_the_steps_id(
    store: EventStore,
) -> None:
    """Review finding: `deposit(command_id="t1/debit")` took the id of transfer t1's debit step, so the
    transfer was parked (the step's event id was already used by another event) and stayed initiated."""
    bank = Bank(store)
    open_two(bank)
    bank.deposit("ann", 100, command_id="t1/debit")
    bank.deposit("bob", 100, command_id="t2/credit")
    assert bank.transfer("t1", "ann", "bob", 10).state.status == "completed"
    assert bank.transfer("t2", "ann", "bob", 20).state.status == "completed"
    assert bank.deposit("ann", 100, command_id="t1/debit").already_done  # the client's re-send, still its own
    assert (bank.account("ann").state.balance_cents, bank.account("bob").state.balance_cents) == (
        10_100 - 30,
        100 + 30,
    )
    assert queries.check_ledger(store).ok


def test_a_resent_business_time_is_the_same_instant_in_any_zone(store: EventStore) -> None:
    bank = Bank(store)
    open_two(bank)
    branch_day = datetime(2024, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    bank.deposit("ann", 5, command_id="late", occurred_at=branch_day)
    assert bank.deposit("ann", 5, command_id="late", occurred_at=branch_day.astimezone(UTC)).already_done
    with pytest.raises(CommandIdReused, match="occurred_at='2024-03-01T10:00:00\\+00:00'"):
        bank.deposit("ann", 5, command_id="late", occurred_at=branch_day + timedelta(days=1))
    with pytest.raises(CommandIdReused):
        bank.deposit("ann", 5, command_id="late")  # without a business time: not the same command


def test_a_command_recorded_before_fingerprints_is_compared_by_its_event(store: EventStore) -> None:
    """Events written by earlier versions carry no `command` metadata: their data still tells."""
    bank = Bank(store)
    open_two(bank)
    legacy = {"actor": "bank", "command_id": "old"}
    bank.repository.execute(Account, "ann", lambda a: a.withdraw("old", 300, "rent"), metadata=legacy)
    assert bank.withdraw("ann", 300, command_id="old", description="rent").already_done
    with pytest.raises(CommandIdReused, match=r"withdraw\(amount_cents=300, description='rent'\)"):
        bank.withdraw("ann", 301, command_id="old", description="rent")
    with pytest.raises(CommandIdReused):
        bank.deposit("ann", 300, command_id="old", description="rent")
    assert bank.account("ann").state.balance_cents == 9_700


def test_transfers_complete_reject_or_compensate_and_money_is_kept(store: EventStore) -> None:
    bank = Bank(store)
    open_two(bank)
    done = bank.transfer("t-ok", "ann", "bob", 2_500)
    assert done.state.status == "completed"
    rejected = bank.transfer("t-big", "ann", "bob", 1_000_000)
    assert rejected.state.status == "rejected" and "holds €75.00" in (rejected.state.reason or "")
    bank.freeze("bob", command_id="freeze-bob")
    compensated = bank.transfer("t-frozen", "ann", "bob", 1_000)
    assert compensated.state.status == "compensated" and "frozen" in (compensated.state.reason or "")
    missing = bank.transfer("t-ghost", "ann", "nobody", 1_000)
    assert missing.state.status == "compensated"  # the money came back
    assert (bank.account("ann").state.balance_cents, bank.account("bob").state.balance_cents) == (
        7_500,
        2_500,
    )
    with pytest.raises(InvalidTransfer):
        bank.initiate_transfer("t-self", "ann", "ann", 5)
    check = queries.check_ledger(store)
    assert check.ok and check.balanced and check.in_transit_cents == 0 and check.unfinished_transfers == ()
    assert (check.total_balance_cents, check.deposits_cents) == (10_000, 10_000)

    trail = queries.transfer_trail(store, "t-frozen")
    assert [(t.stream, t.type) for t in trail] == [
        ("transfer-t-frozen", "TransferInitiated"),
        ("account-ann", "TransferDebited"),
        ("transfer-t-frozen", "TransferSourceDebited"),
        ("account-ann", "TransferRefunded"),
        ("transfer-t-frozen", "TransferCompensated"),
    ]
    assert trail[1].causation_id is not None and trail[1].actor == "transfer-manager"
    # Sending the transfer again is acknowledged: no second debit.
    assert bank.initiate_transfer("t-ok", "ann", "bob", 2_500).already_done
    bank.process_transfers()
    assert bank.account("ann").state.balance_cents == 7_500


def test_the_process_manager_survives_a_step_delivered_twice(store: EventStore) -> None:
    bank = Bank(store)
    open_two(bank)
    bank.transfer("t1", "ann", "bob", 1_000)
    from chronik.examples.bank import TransferProcessManager

    manager = TransferProcessManager(store)
    for event in store.read_stream("transfer-t1"):  # at-least-once: every step handed over again
        with store.transaction() as uow:
            manager(event, uow)
    assert len(store.read_stream("account-ann")) == 3 and len(store.read_stream("account-bob")) == 2
    assert queries.check_ledger(store).ok


def test_time_machine_by_business_time_and_by_recorded_time(store_factory: StoreFactory) -> None:
    clock = ManualClock(datetime(2021, 3, 1, 9, 0, tzinfo=UTC))
    store = store_factory(clock=clock)
    bank = Bank(store)
    bank.open_account("ann", "Ann", command_id="open")
    bank.deposit("ann", 50_000, command_id="salary-2021-03", description="salary")
    five_years_ago = clock()
    clock.set(datetime(2023, 6, 1, tzinfo=UTC))
    bank.withdraw("ann", 20_000, command_id="car", description="car")
    clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    knew_at = clock()
    clock.advance(timedelta(days=1))
    # A branch deposit of March 2023 is entered only now, back-dated to when it happened.
    march_2023 = datetime(2023, 3, 15, tzinfo=UTC)
    bank.deposit(
        "ann", 1_200, command_id="branch-2023-03-15", description="branch deposit", occurred_at=march_2023
    )

    assert queries.balance_as_of(store, "ann", occurred_at=five_years_ago).balance_cents == 50_000
    with pytest.raises(AggregateNotFound):
        queries.balance_as_of(store, "ann", occurred_at=datetime(2020, 1, 1, tzinfo=UTC))
    end_of_2023 = datetime(2023, 12, 31, tzinfo=UTC)
    in_the_world = queries.balance_as_of(store, "ann", occurred_at=end_of_2023)
    assert in_the_world.balance_cents == 50_000 - 20_000 + 1_200
    what_we_knew = queries.balance_as_of(store, "ann", recorded_at=knew_at)
    assert (what_we_knew.balance_cents, what_we_knew.basis) == (30_000, "recorded time")
    assert queries.balance_as_of(store, "ann").balance_cents == 31_200

    year_2023 = dict(start=datetime(2023, 1, 1, tzinfo=UTC), end=end_of_2023)
    now_printed = queries.statement(store, "ann", **year_2023)
    assert (now_printed.opening_balance_cents, now_printed.closing_balance_cents) == (50_000, 31_200)
    assert [line.amount_cents for line in now_printed.lines] == [1_200, -20_000]  # business-time order
    printed_then = queries.statement(store, "ann", known_at=knew_at, **year_2023)
    assert [line.amount_cents for line in printed_then.lines] == [-20_000]
    assert printed_then.closing_balance_cents == 30_000


@pytest.mark.sql_stores
def test_monthly_statements_follow_business_time(store_factory: StoreFactory, backend: str) -> None:
    clock = ManualClock(datetime(2026, 1, 10, tzinfo=UTC))
    store = store_factory(clock=clock)
    months = MonthlyStatements(store)
    months.attach_inline()
    bank = Bank(store)
    open_two(bank)
    clock.set(datetime(2026, 2, 5, tzinfo=UTC))
    bank.transfer("t1", "ann", "bob", 4_000)
    clock.set(datetime(2026, 3, 2, tzinfo=UTC))
    bank.deposit("ann", 300, command_id="late", occurred_at=datetime(2026, 1, 20, tzinfo=UTC))
    summary = [
        (m.month, m.opening_balance_cents, m.credits_cents, m.debits_cents, m.closing_balance_cents)
        for m in queries.monthly_statements(store, "ann")
    ]
    assert summary == [("2026-01", 0, 10_300, 0, 10_300), ("2026-02", 10_300, 0, 4_000, 6_300)]
    assert [m.closing_balance_cents for m in months.months("bob")] == [4_000]


@pytest.mark.sql_stores
def test_a_drifted_balance_projection_is_detected(store_factory: StoreFactory) -> None:
    store = store_factory()
    balances = AccountBalances(store)
    balances.attach_inline()
    bank = Bank(store)
    open_two(bank)
    bank.transfer("t1", "ann", "bob", 1_500)
    assert balances.balances() == {"ann": 8_500, "bob": 1_500}
    listed = queries.accounts(store)
    assert [(a.account_id, a.owner, a.balance_cents, a.deposits_cents) for a in listed] == [
        ("ann", "Ann", 8_500, 10_000),
        ("bob", "Bob", 1_500, 0),
    ]
    assert [a.account_id for a in queries.accounts(store, prefix="b")] == ["bob"]
    assert queries.check_ledger(store, projection=balances).ok and reconcile(balances).ok
    # Someone "fixes" a balance by hand, behind the log's back.
    fix = "UPDATE bank_accounts__accounts__v1 SET balance_cents = 9000 WHERE account_id = 'bob'"
    assert execute_behind_the_store(store, fix) == 1
    check = queries.check_ledger(store, projection=balances)
    assert not check.ok and check.balanced  # the log still balances; the read model drifted
    assert [(d.account_id, d.projected_cents, d.actual_cents) for d in check.drift] == [("bob", 9_000, 1_500)]
    report = reconcile(balances)
    assert not report.ok and report.differences[0].key == {"account_id": "bob"}


def test_racing_sends_under_one_command_id_record_one_and_refuse_the_others(store: EventStore) -> None:
    """Eight clients send different deposits under one id at once. A loser that passed the look-up
    before the winner's append appends the same event ids at the same place, which the store
    acknowledges as a retry without looking at the data (seen: all eight told "recorded", one
    deposit kept); or it meets the unique event id (`DuplicateEventId`). Either way, a different
    command is refused here too, never acknowledged."""
    Bank(store).open_account("ann", "Ann", command_id="open-ann")
    outcomes: list[CommandResult | CommandIdReused] = []
    barrier = threading.Barrier(8)

    def send(cents: int) -> None:
        bank = Bank(store)
        barrier.wait()
        try:
            outcomes.append(bank.deposit("ann", cents, command_id="same"))
        except CommandIdReused as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=send, args=(100 + n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorded = [o for o in outcomes if isinstance(o, CommandResult)]
    assert len(outcomes) == 8 and len(recorded) == 1, outcomes
    assert recorded[0].already_done is False
    assert [e.type for e in store.read_stream("account-ann")] == ["AccountOpened", "FundsDeposited"]
