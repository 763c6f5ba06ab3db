"""`chronik demo bank`: the bank example told against a real store, five years on a manual clock.

The store is opened with a `ManualClock` so that "five years ago" is a real point of the log, not
a pretence: every event is recorded at the clock's time. The clock starts at 1 March 2021, or just
after the log's last event when the store already holds later ones (`recorded_at` never goes
backwards), so the demo can run again and again on the same file with fresh account ids.

Because the clock moves five years at a time, a second run records events in the future, and every
later append to that log would be clamped to that future time. So without `--store` the demo keeps
to a file of its own (`chronik-bank-demo.db`), never the default store (like every demo); and on a
store given with `--store` it refuses to push recorded time past the real present.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from chronik.cli.stores import demo_store_url
from chronik.clock import ManualClock, system_clock
from chronik.errors import InvalidInput
from chronik.examples.bank import AccountBalances, Bank, MonthlyStatements, queries
from chronik.examples.money import euros
from chronik.projections import UnsupportedStore, catch_up
from chronik.store import EventStore, open_store

START = datetime(2021, 3, 1, 9, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _start_after_log(store: EventStore) -> datetime:
    head = store.head_position()
    if head == 0:
        return START
    last = store.read_all(head, to_position=head, limit=1)
    if not last or last[0].recorded_at < START:
        return START
    return last[0].recorded_at.replace(microsecond=0) + timedelta(days=1)


DEMO_STORE_URL = demo_store_url("bank")


class DemoWouldWriteTheFuture(InvalidInput):
    """The store's log already runs so late that five manual years would end after today."""


def run_bank_demo(store_url: str | None, console: Console) -> None:
    clock = ManualClock(START)
    store = open_store(store_url or DEMO_STORE_URL, clock=clock)
    try:
        end = _start_after_log(store) + 5 * YEAR
        if store_url is not None and end > system_clock():
            raise DemoWouldWriteTheFuture(
                f"the log of {store.url} already runs to {_day(end - 5 * YEAR)}: five years of this demo "
                f"would record events up to {_day(end)}, in the future, and recorded time never goes back. "
                "Run it on a fresh store (for example --store sqlite:///bank-demo.db) or without --store."
            )
        _run(store, clock, console)
    finally:
        store.close()


def _run(store: EventStore, clock: ManualClock, console: Console) -> None:
    start = _start_after_log(store)
    clock.set(start)
    run = uuid.uuid4().hex[:6]
    alice, bob, carol = (f"{name}-{run}" for name in ("alice", "bob", "carol"))
    bank = Bank(store, actor="teller")
    console.rule("[bold]chronik demo: the bank (an example application), a ledger of events")
    console.print(
        f"store: {store.url}\naccounts: account-{alice}, account-{bob}, account-{carol}", highlight=False
    )
    if start != START:
        console.print(
            f"(this store's log already runs past {_day(START)}; recorded time never goes backwards, "
            f"so this run's clock starts on {_day(start)})",
            highlight=False,
        )

    # 1 -------------------------------------------------------------------------------------------
    console.rule("1. Five years of a ledger (a manual clock moves the bank through time)")
    bank.open_account(alice, "Alice", command_id="open")
    bank.open_account(bob, "Bob", command_id="open", overdraft_limit_cents=50_000)
    bank.open_account(carol, "Carol", command_id="open")
    bank.deposit(alice, 120_000, command_id="salary-0", description="salary")
    bank.deposit(bob, 30_000, command_id="salary-0", description="salary")
    bank.deposit(carol, 10_000, command_id="gift", description="birthday gift")
    five_years_ago = clock()
    console.print(f"{_day(five_years_ago)}: three accounts opened; Alice's first salary of {euros(120_000)}")
    for year in range(1, 5):
        clock.set(start + year * YEAR)
        bank.deposit(alice, 80_000, command_id=f"bonus-{year}", description=f"bonus, year {year}")
        bank.withdraw(alice, 45_000, command_id=f"rent-{year}", description=f"rent, year {year}")
        console.print(f"{_day(clock())}: Alice's bonus {euros(80_000)} in, rent {euros(45_000)} out")
    clock.set(start + 5 * YEAR)
    today = clock()
    console.print(
        f"... and today is {_day(today)}. Alice holds {euros(bank.account(alice).state.balance_cents)}."
    )

    # 2 -------------------------------------------------------------------------------------------
    console.rule("2. Transfers: a process manager moves the money step by step")
    done = bank.transfer(f"rent-share-{run}", alice, bob, 25_000, reference="rent share")
    console.print(f"transfer {done.id}: Alice -> Bob {euros(25_000)}: [bold green]{done.state.status}[/]")
    too_big = bank.transfer(f"too-big-{run}", carol, alice, 1_000_000)
    console.print(
        f"transfer {too_big.id}: Carol -> Alice {euros(1_000_000)}: [bold yellow]{too_big.state.status}[/]"
    )
    console.print(f"  ({too_big.state.reason}; nothing moved)", highlight=False)
    again = bank.withdraw(alice, 45_000, command_id="rent-4", description="rent, year 4")
    console.print(
        f"the cash machine re-sends yesterday's command 'rent-4' after a timeout: "
        f"already done = {again.already_done}; nothing is withdrawn twice"
    )

    # 3 -------------------------------------------------------------------------------------------
    console.rule("3. A failed credit is compensated")
    bank.freeze(carol, command_id="freeze-1", reason="card reported stolen")
    failed = bank.transfer(f"to-frozen-{run}", alice, carol, 5_000, reference="dinner")
    console.print(
        f"Carol's account is frozen. Transfer {failed.id}: Alice -> Carol {euros(5_000)}: "
        f"[bold red]{failed.state.status}[/] ({failed.state.reason})",
        highlight=False,
    )
    console.print(f"the audit trail of {failed.id}, by its correlation id (every stream it touched):")
    trail = Table(show_lines=False)
    for column in ("pos", "stream", "event", "actor", "data"):
        trail.add_column(column)
    for entry in queries.transfer_trail(store, failed.id):
        shown = {k: v for k, v in entry.data.items() if k != "transfer_id"}
        trail.add_row(str(entry.global_position), entry.stream, entry.type, entry.actor or "", str(shown))
    console.print(trail)

    # 4 -------------------------------------------------------------------------------------------
    console.rule("4. Time machine by business time: Alice's balance five years ago")
    then = queries.balance_as_of(store, alice, occurred_at=five_years_ago)
    now = queries.balance_as_of(store, alice)
    console.print(
        f"on {_day(five_years_ago)}: [bold]{euros(then.balance_cents)}[/] "
        f"(replayed up to version {then.version}); "
        f"today: [bold]{euros(now.balance_cents)}[/] (version {now.version})"
    )

    # 5 -------------------------------------------------------------------------------------------
    console.rule("5. Business time vs recorded time: a back-dated correction")
    knew_at = clock()
    clock.advance(timedelta(days=1))
    branch_day = start + 3 * YEAR + timedelta(days=40)
    bank.deposit(
        alice,
        7_500,
        command_id="branch-deposit",
        description="cash deposit at the branch",
        occurred_at=branch_day,
    )
    console.print(
        f"{_day(clock())}: a cash deposit of {euros(7_500)} made at the branch on {_day(branch_day)} "
        "was never "
        "entered. It is entered today, back-dated to the day it happened."
    )
    year_end = datetime(branch_day.year, 12, 31, 23, 59, tzinfo=UTC)
    period = {"start": datetime(branch_day.year, 1, 1, tzinfo=UTC), "end": year_end}
    printed_then = queries.statement(store, alice, known_at=knew_at, **period)
    printed_now = queries.statement(store, alice, **period)
    console.print(
        f"Alice's balance at {_day(year_end)} (business time): as the bank knew it yesterday "
        f"[bold]{euros(printed_then.closing_balance_cents)}[/], as it knows it today "
        f"[bold]{euros(printed_now.closing_balance_cents)}[/]"
    )
    known = queries.balance_as_of(store, alice, recorded_at=knew_at)
    console.print(
        f"what the bank knew at {knew_at.isoformat()} (recorded time): Alice held "
        f"[bold]{euros(known.balance_cents)}[/]; "
        f"today it knows {euros(bank.account(alice).state.balance_cents)}"
    )
    table = Table(title=f"Alice's statement for {branch_day.year}: as printed yesterday vs today")
    for column in ("business date", "entry", "amount", "balance (yesterday)", "balance (today)"):
        table.add_column(column)
    then_lines = {(line.occurred_at, line.description): line for line in printed_then.lines}
    table.add_row(
        "",
        "opening balance",
        "",
        euros(printed_then.opening_balance_cents),
        euros(printed_now.opening_balance_cents),
    )
    for line in printed_now.lines:
        old = then_lines.get((line.occurred_at, line.description))
        table.add_row(
            _day(line.occurred_at),
            line.description + ("" if old else "  [bold yellow](entered late)[/]"),
            euros(line.amount_cents),
            euros(old.balance_cents) if old else "(not known yet)",
            euros(line.balance_cents),
        )
    console.print(table)

    # 6 -------------------------------------------------------------------------------------------
    console.rule("6. Reconciliation: the books, recomputed from the log")
    try:
        balances, months = AccountBalances(store), MonthlyStatements(store)
        catch_up(balances)
        catch_up(months)
    except UnsupportedStore:
        balances = None
        console.print("(this store keeps no SQL read models; the books are checked from the log alone)")
    check = queries.check_ledger(store, projection=balances)
    console.print(
        f"{check.accounts} accounts hold {euros(check.total_balance_cents)}; "
        f"deposits {euros(check.deposits_cents)} - withdrawals {euros(check.withdrawals_cents)} "
        f"= {euros(check.deposits_cents - check.withdrawals_cents)}; "
        f"in transit {euros(check.in_transit_cents)}; overdrawn: {list(check.overdrawn) or 'none'}; "
        f"drifted read-model rows: {len(check.drift)}"
    )
    console.print("[bold green]the books balance[/]" if check.ok else "[bold red]the books do NOT balance[/]")
    if balances is not None:
        last_months = queries.monthly_statements(store, alice)[-3:]
        table = Table(title="Alice's last months (monthly statement projection, by business time)")
        for column in ("month", "opening", "credits", "debits", "closing", "entries"):
            table.add_column(column)
        for month in last_months:
            table.add_row(
                month.month,
                euros(month.opening_balance_cents),
                euros(month.credits_cents),
                euros(month.debits_cents),
                euros(month.closing_balance_cents),
                str(month.entries),
            )
        console.print(table)
    if store.url.startswith("memory:"):
        # another process cannot open this store: a `chronik state` hint would find nothing
        console.print(
            "this store lives in memory: it is gone when the demo ends. To inspect the accounts "
            "afterwards (chronik state), run the demo on a file: --store sqlite:///bank-demo.db",
            highlight=False,
        )
        return
    console.print(
        f"try it: chronik state account-{alice} --store {store.url}\n"
        f"        chronik state account-{alice} --occurred-as-of {five_years_ago.isoformat()} "
        f"--store {store.url}",
        highlight=False,
    )
