"""Questions the bank answers from its log: the functions the HTTP server and the demo call.

Everything here is read-only and derived from events, so every answer can be given "as of" a
moment, in either of two senses:

* **business time** (`occurred_at`): what was true in the world then, including entries made later
  but back-dated (a branch deposit of March entered in June counts in March);
* **recorded time** (`recorded_at` / `known_at`): what the bank *knew* then; later entries, even
  back-dated ones, are left out. The difference between the two is exactly the late entries.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import msgspec

from chronik.domain import aggregates
from chronik.errors import AggregateNotFound, StreamNotFound
from chronik.events.envelope import RecordedEvent
from chronik.examples.bank.events import BALANCE_EVENTS, signed_amount
from chronik.examples.bank.model import Account
from chronik.examples.bank.projections import AccountBalances, MonthlyStatements, MonthSummary
from chronik.store import EventStore


class Balance(msgspec.Struct, frozen=True):
    """An account's balance now, or as of a moment (`basis` says which kind of time)."""

    account_id: str
    balance_cents: int
    status: str
    overdraft_limit_cents: int
    version: int  # the last stream version the answer includes
    basis: str  # "now" | "business time" | "recorded time" | "business time, as recorded then"
    as_of: datetime | None = None  # the business time if one was asked, else the recorded time
    known_at: datetime | None = None  # the recorded time, when both were asked


def balance_as_of(
    store: EventStore,
    account_id: str,
    *,
    occurred_at: datetime | None = None,
    recorded_at: datetime | None = None,
) -> Balance:
    """The balance now, as it was in the world at `occurred_at`, as the bank knew it at `recorded_at`,
    or both: what the bank, at `recorded_at`, believed the balance was at `occurred_at` (the
    statement's `known_at`, for one moment).

    Raises `AggregateNotFound` when the account did not exist (yet) at that moment.
    """
    account = aggregates.repository(store).load(
        Account, account_id, occurred_at=occurred_at, recorded_at=recorded_at
    )
    if occurred_at is not None:
        basis = "business time" if recorded_at is None else "business time, as recorded then"
    else:
        basis = "recorded time" if recorded_at is not None else "now"
    assert account.version is not None
    return Balance(
        account_id=account_id,
        balance_cents=account.state.balance_cents,
        status=account.state.status,
        overdraft_limit_cents=account.state.overdraft_limit_cents,
        version=account.version,
        basis=basis,
        as_of=occurred_at or recorded_at,
        known_at=recorded_at if occurred_at is not None else None,
    )


class StatementLine(msgspec.Struct, frozen=True):
    occurred_at: datetime
    recorded_at: datetime
    type: str
    description: str
    amount_cents: int  # signed: + money in, - money out
    balance_cents: int  # running balance after this line, in business-time order
    transfer_id: str | None = None


class Statement(msgspec.Struct, frozen=True):
    """An account's money movements between two business times, as known at `known_at` (None: now)."""

    account_id: str
    start: datetime | None
    end: datetime | None
    known_at: datetime | None
    opening_balance_cents: int
    closing_balance_cents: int
    lines: tuple[StatementLine, ...]


def _describe(event: RecordedEvent) -> str:
    data = event.data
    if event.type == "TransferDebited":
        return f"transfer to {data.get('target')}"
    if event.type == "TransferCredited":
        return f"transfer from {data.get('source')}"
    if event.type == "TransferRefunded":
        return f"refund: {data.get('reason')}"
    return str(data.get("description") or event.type)


def statement(
    store: EventStore,
    account_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    known_at: datetime | None = None,
) -> Statement:
    """Lines with business time in [start, end] (both inclusive, None: open-ended), in business-time order.

    The opening balance sums everything that occurred before `start`. With `known_at`, only entries
    recorded by then count: the statement the bank would have printed at that moment.
    """
    stream = Account.stream_name(account_id)
    try:
        events = store.read_stream(stream, recorded_until=known_at)
    except StreamNotFound:
        raise AggregateNotFound(stream) from None
    moves = sorted(
        (e for e in events if e.type in BALANCE_EVENTS), key=lambda e: (e.occurred_at, e.stream_version)
    )
    opening = sum(signed_amount(e.type, e.data) for e in moves if start is not None and e.occurred_at < start)
    balance = opening
    lines = []
    for event in moves:
        if (start is not None and event.occurred_at < start) or (end is not None and event.occurred_at > end):
            continue
        amount = signed_amount(event.type, event.data)
        balance += amount
        transfer = event.data.get("transfer_id")
        lines.append(
            StatementLine(
                occurred_at=event.occurred_at,
                recorded_at=event.recorded_at,
                type=event.type,
                description=_describe(event),
                amount_cents=amount,
                balance_cents=balance,
                transfer_id=transfer if isinstance(transfer, str) else None,
            )
        )
    return Statement(account_id, start, end, known_at, opening, balance, tuple(lines))


def monthly_statements(store: EventStore, account_id: str) -> list[MonthSummary]:
    """The account's months from the `bank_monthly_statements` projection (kept current by its runner)."""
    return MonthlyStatements(store).months(account_id)


class TrailEntry(msgspec.Struct, frozen=True):
    stream: str
    stream_version: int
    global_position: int
    type: str
    data: dict[str, Any]
    actor: str | None
    causation_id: str | None
    recorded_at: datetime
    occurred_at: datetime


def transfer_trail(store: EventStore, transfer_id: str) -> list[TrailEntry]:
    """Every event a transfer caused, in every stream, in log order (its correlation id is its id)."""
    return [
        TrailEntry(
            stream=e.stream,
            stream_version=e.stream_version,
            global_position=e.global_position,
            type=e.type,
            data=e.data,
            actor=e.actor,
            causation_id=e.causation_id,
            recorded_at=e.recorded_at,
            occurred_at=e.occurred_at,
        )
        for e in store.read_correlated(transfer_id)
    ]


class AccountDrift(msgspec.Struct, frozen=True):
    account_id: str
    projected_cents: int | None  # None: missing from the projection
    actual_cents: int


class LedgerCheck(msgspec.Struct, frozen=True):
    """The books, recomputed from the log.

    `balanced`: the balances plus the money in transit equal deposits minus withdrawals (transfers
    create and destroy nothing). `overdrawn`: accounts that a withdrawal or a debit ever took below
    minus their limit at that moment. `drift`: rows of the balance projection that disagree with the log.
    """

    accounts: int
    total_balance_cents: int
    deposits_cents: int
    withdrawals_cents: int
    in_transit_cents: int
    unfinished_transfers: tuple[str, ...]
    overdrawn: tuple[str, ...]
    drift: tuple[AccountDrift, ...]

    @property
    def balanced(self) -> bool:
        return (
            self.total_balance_cents + self.in_transit_cents == self.deposits_cents - self.withdrawals_cents
        )

    @property
    def ok(self) -> bool:
        return self.balanced and not self.overdrawn and not self.drift


def check_ledger(
    store: EventStore, *, prefix: str = "", projection: AccountBalances | None = None
) -> LedgerCheck:
    """Recompute every account (ids starting with `prefix`) from the whole log and check the books.

    With `projection`, also compare its balances with the log's (detects a drifted read model).
    """
    balance: dict[str, int] = defaultdict(int)
    limit: dict[str, int] = defaultdict(int)
    overdrawn: set[str] = set()
    deposits = withdrawals = 0
    in_transit: dict[str, int] = {}
    finished: set[str] = set()
    transfers: set[str] = set()
    for event in store.iter_all(categories=["account", "transfer"]):
        entity = event.stream.partition("-")[2]
        data = event.data
        if event.category == "transfer":
            if event.type == "TransferInitiated" and str(data.get("source", "")).startswith(prefix):
                transfers.add(entity)
            if event.type in ("TransferCompleted", "TransferRejected", "TransferCompensated"):
                finished.add(entity)
            continue
        if not entity.startswith(prefix):
            continue
        if event.type == "AccountOpened":
            balance[entity] += 0
            limit[entity] = int(data.get("overdraft_limit_cents", 0))
        elif event.type == "OverdraftLimitSet":
            limit[entity] = int(data.get("limit_cents", 0))
        elif event.type in BALANCE_EVENTS:
            amount = signed_amount(event.type, data)
            balance[entity] += amount
            # Only money going out can overdraw: an account whose limit was lowered below its debt
            # is over its limit, but a deposit that reduces the debt is no overdraft.
            if amount < 0 and balance[entity] < -limit[entity]:
                overdrawn.add(entity)
            if event.type == "FundsDeposited":
                deposits += amount
            elif event.type == "FundsWithdrawn":
                withdrawals -= amount
            else:  # a debit puts money in transit; its credit or refund takes it out again
                transfer = str(data.get("transfer_id"))
                in_transit[transfer] = in_transit.get(transfer, 0) - amount
    drift: list[AccountDrift] = []
    if projection is not None:
        projected = projection.balances()
        for account, actual in sorted(balance.items()):
            if projected.get(account) != actual:
                drift.append(AccountDrift(account, projected.get(account), actual))
    return LedgerCheck(
        accounts=len(balance),
        total_balance_cents=sum(balance.values()),
        deposits_cents=deposits,
        withdrawals_cents=withdrawals,
        in_transit_cents=sum(in_transit.values()),
        unfinished_transfers=tuple(sorted(transfers - finished)),
        overdrawn=tuple(sorted(overdrawn)),
        drift=tuple(drift),
    )


class AccountRow(msgspec.Struct, frozen=True):
    account_id: str
    owner: str
    status: str
    balance_cents: int
    overdraft_limit_cents: int
    deposits_cents: int
    withdrawals_cents: int
    updated_at: str


def accounts(store: EventStore, *, prefix: str = "", limit: int = 1000) -> list[AccountRow]:
    """Accounts from the `bank_accounts` projection (kept current inline or by a runner), by id."""
    rows = AccountBalances(store).query(
        "SELECT account_id, owner, status, balance_cents, overdraft_limit_cents, deposits_cents, "
        "withdrawals_cents, updated_at FROM {accounts} WHERE account_id >= ? ORDER BY account_id LIMIT ?",
        (prefix, limit),
    )
    return [AccountRow(*row) for row in rows if str(row[0]).startswith(prefix)]
