"""Read models of the bank: every account's balance, and a monthly statement per account.

Written against the raw event types and JSON (like the cart's), so they do not import the
aggregates. Months are taken from each event's business time (`occurred_at`, UTC): a deposit
back-dated to March lands in March's statement even if it was entered in June. Every value comes
from the events, never the clock, so a rebuild gives the same rows and `reconcile` can compare them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from chronik.events.envelope import RecordedEvent
from chronik.examples.bank.events import BALANCE_EVENTS, MONEY_IN, signed_amount
from chronik.projections import Projection, ProjectionTx, handles, register_projection


def _account_id(event: RecordedEvent) -> str:
    return event.stream.partition("-")[2]


@register_projection
class AccountBalances(Projection):
    """One row per account: owner, status, balance, overdraft limit, and lifetime deposits/withdrawals."""

    name = "bank_accounts"
    version = 1
    tables = ("accounts",)
    schema = (
        """CREATE TABLE {accounts} (
            account_id            TEXT    PRIMARY KEY,
            owner                 TEXT    NOT NULL,
            status                TEXT    NOT NULL,   -- open | frozen | closed
            balance_cents         INTEGER NOT NULL,
            overdraft_limit_cents INTEGER NOT NULL,
            deposits_cents        INTEGER NOT NULL,   -- FundsDeposited only (not transfers)
            withdrawals_cents     INTEGER NOT NULL,   -- FundsWithdrawn only
            updated_at            TEXT    NOT NULL    -- recorded_at of the last event applied
        )""",
    )

    def _upsert(self, tx: ProjectionTx, event: RecordedEvent, **changes: Any) -> None:
        tx.execute(
            "INSERT INTO {accounts} (account_id, owner, status, balance_cents, overdraft_limit_cents, "
            "deposits_cents, withdrawals_cents, updated_at) VALUES (?, '', 'open', 0, 0, 0, 0, ?) "
            "ON CONFLICT (account_id) DO UPDATE SET updated_at = excluded.updated_at",
            (_account_id(event), event.recorded_at.isoformat()),
        )
        for column, value in changes.items():  # column names are this module's own literals
            tx.execute(
                f"UPDATE {{accounts}} SET {column} = ? WHERE account_id = ?", (value, _account_id(event))
            )

    @handles("AccountOpened")
    def opened(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        data = event.data
        limit = data.get("overdraft_limit_cents")
        self._upsert(
            tx,
            event,
            owner=str(data.get("owner", "")),
            overdraft_limit_cents=limit if isinstance(limit, int) else 0,
        )

    @handles(*BALANCE_EVENTS)
    def money(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        amount = signed_amount(event.type, event.data)
        self._upsert(tx, event)
        tx.execute(
            "UPDATE {accounts} SET balance_cents = balance_cents + ?, "
            "deposits_cents = deposits_cents + ?, withdrawals_cents = withdrawals_cents + ? "
            "WHERE account_id = ?",
            (
                amount,
                amount if event.type == "FundsDeposited" else 0,
                -amount if event.type == "FundsWithdrawn" else 0,
                _account_id(event),
            ),
        )

    @handles("OverdraftLimitSet")
    def limit_set(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        limit = event.data.get("limit_cents")
        self._upsert(tx, event, overdraft_limit_cents=limit if isinstance(limit, int) else 0)

    @handles("AccountFrozen", "AccountUnfrozen", "AccountClosed")
    def status(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        status = {"AccountFrozen": "frozen", "AccountUnfrozen": "open", "AccountClosed": "closed"}[event.type]
        self._upsert(tx, event, status=status)

    def balances(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self.query("SELECT account_id, balance_cents FROM {accounts}")}


class MonthSummary(msgspec.Struct, frozen=True):
    """One account's month by business time; balances carry over from the months before."""

    account_id: str
    month: str  # YYYY-MM (UTC)
    opening_balance_cents: int
    credits_cents: int
    debits_cents: int
    closing_balance_cents: int
    entries: int


@register_projection
class MonthlyStatements(Projection):
    """Credits, debits and entry counts per account and month of business time."""

    name = "bank_monthly_statements"
    version = 1
    tables = ("months",)
    schema = (
        """CREATE TABLE {months} (
            account_id    TEXT    NOT NULL,
            month         TEXT    NOT NULL,   -- YYYY-MM of occurred_at, UTC
            credits_cents INTEGER NOT NULL,
            debits_cents  INTEGER NOT NULL,
            entries       INTEGER NOT NULL,
            PRIMARY KEY (account_id, month)
        )""",
    )

    @handles(*BALANCE_EVENTS)
    def money(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        # The existing row's columns are qualified: PostgreSQL finds a bare name ambiguous with `excluded`.
        amount = signed_amount(event.type, event.data)
        credit, debit = (amount, 0) if event.type in MONEY_IN else (0, -amount)
        tx.execute(
            "INSERT INTO {months} (account_id, month, credits_cents, debits_cents, entries) "
            "VALUES (?, ?, ?, ?, 1) ON CONFLICT (account_id, month) DO UPDATE SET "
            "credits_cents = {months}.credits_cents + excluded.credits_cents, "
            "debits_cents = {months}.debits_cents + excluded.debits_cents, entries = {months}.entries + 1",
            (_account_id(event), event.occurred_at.strftime("%Y-%m"), credit, debit),
        )

    def months(self, account_id: str) -> list[MonthSummary]:
        """The account's months in order, with opening and closing balances carried forward."""
        rows = self.query(
            "SELECT month, credits_cents, debits_cents, entries FROM {months} "
            "WHERE account_id = ? ORDER BY month",
            (account_id,),
        )
        balance = 0
        summaries = []
        for month, credits, debits, entries in rows:
            closing = balance + credits - debits
            summaries.append(MonthSummary(account_id, month, balance, credits, debits, closing, entries))
            balance = closing
        return summaries
