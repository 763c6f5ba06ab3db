"""The bank's aggregates: an account decides on its own balance; a transfer remembers its progress.

Every command carries a command id, and the ids of the events it records are derived from it
(`command_event_id`): the same command sent twice produces the same event ids, so the second
send is recognized (`services.run_command`) and acknowledged instead of moving money twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from chronik.domain import Aggregate, PendingEvent, applies
from chronik.examples.bank.errors import (
    AccountAlreadyOpened,
    AccountNotOpen,
    BalanceNotZero,
    InsufficientFunds,
    InvalidAmount,
    InvalidTransfer,
)
from chronik.examples.bank.events import (
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountUnfrozen,
    FundsDeposited,
    FundsWithdrawn,
    OverdraftLimitSet,
    TransferCompensated,
    TransferCompleted,
    TransferCredited,
    TransferDebited,
    TransferInitiated,
    TransferRefunded,
    TransferRejected,
    TransferSourceDebited,
    TransferTargetCredited,
)

COMMAND_NAMESPACE: Final = uuid.UUID("5b0c8a4e-2f57-4e0b-9b55-6c1f3f7d2a10")
# The transfer process manager's own steps (debit, credit, refund) derive their ids in a namespace
# of their own: a client's command id can be any text, `t1/debit` included, and must never take the
# id of a step, which would make the step look already done (or refused) when it is not.
STEP_NAMESPACE: Final = uuid.uuid5(COMMAND_NAMESPACE, "transfer process manager steps")


def command_event_id(
    stream: str, command_id: str, index: int = 0, *, namespace: uuid.UUID = COMMAND_NAMESPACE
) -> uuid.UUID:
    """The id of the `index`-th event a command records in `stream`: the same on every retry."""
    return uuid.uuid5(namespace, f"{stream}/{command_id}/{index}")


def _check_amount(amount: object) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidAmount(amount)
    return amount


def emit(
    aggregate: Aggregate[Any],
    command_id: str,
    event: object,
    occurred_at: datetime | None = None,
    *,
    namespace: uuid.UUID = COMMAND_NAMESPACE,
) -> None:
    """Record `event` on `aggregate` with the id its command determines (see `command_event_id`)."""
    aggregate.apply(event)
    event_id = command_event_id(aggregate.stream, command_id, len(aggregate.pending), namespace=namespace)
    aggregate._pending.append(PendingEvent(event, occurred_at, event_id))


class AccountState(msgspec.Struct):
    owner: str = ""
    status: str = "new"  # new | open | frozen | closed
    balance_cents: int = 0
    overdraft_limit_cents: int = 0


class Account(Aggregate[AccountState]):
    """A bank account: its balance never goes below minus its overdraft limit (0 unless set)."""

    category = "account"
    snapshot_every = 100

    def open(
        self, command_id: str, owner: str, overdraft_limit_cents: int = 0, occurred_at: datetime | None = None
    ) -> None:
        if self.state.status != "new":
            raise AccountAlreadyOpened(self.id)
        if overdraft_limit_cents < 0:
            raise InvalidAmount(overdraft_limit_cents)
        emit(self, command_id, AccountOpened(owner, overdraft_limit_cents), occurred_at)

    def deposit(
        self, command_id: str, amount_cents: int, description: str = "", occurred_at: datetime | None = None
    ) -> None:
        self._check_open("take deposits")
        emit(self, command_id, FundsDeposited(_check_amount(amount_cents), description), occurred_at)

    def withdraw(
        self, command_id: str, amount_cents: int, description: str = "", occurred_at: datetime | None = None
    ) -> None:
        self._check_open("pay out")
        self._check_funds(_check_amount(amount_cents))
        emit(self, command_id, FundsWithdrawn(amount_cents, description), occurred_at)

    def set_overdraft_limit(self, command_id: str, limit_cents: int) -> None:
        self._check_open("change its overdraft limit")
        if not isinstance(limit_cents, int) or limit_cents < 0:
            raise InvalidAmount(limit_cents)
        if limit_cents != self.state.overdraft_limit_cents:
            emit(self, command_id, OverdraftLimitSet(limit_cents))

    def freeze(self, command_id: str, reason: str = "") -> None:
        self._check_exists("be frozen")
        if self.state.status == "open":
            emit(self, command_id, AccountFrozen(reason))

    def unfreeze(self, command_id: str) -> None:
        self._check_exists("be unfrozen")
        if self.state.status == "frozen":
            emit(self, command_id, AccountUnfrozen())

    def close(self, command_id: str) -> None:
        self._check_exists("be closed")
        if self.state.status == "closed":
            return
        if self.state.balance_cents != 0:
            raise BalanceNotZero(self.id, self.state.balance_cents)
        emit(self, command_id, AccountClosed())

    # -- the process manager's commands ----------------------------------------------------------

    def debit_for_transfer(self, transfer_id: str, target: str, amount_cents: int) -> None:
        self._check_open("send money")
        self._check_funds(_check_amount(amount_cents))
        emit(
            self,
            f"{transfer_id}/debit",
            TransferDebited(transfer_id, target, amount_cents),
            namespace=STEP_NAMESPACE,
        )

    def credit_for_transfer(self, transfer_id: str, source: str, amount_cents: int) -> None:
        self._check_open("receive money")
        emit(
            self,
            f"{transfer_id}/credit",
            TransferCredited(transfer_id, source, _check_amount(amount_cents)),
            namespace=STEP_NAMESPACE,
        )

    def refund_transfer(self, transfer_id: str, amount_cents: int, reason: str) -> None:
        """A compensation is never refused (whatever the account's status): refusing it would lose money."""
        emit(
            self,
            f"{transfer_id}/refund",
            TransferRefunded(transfer_id, _check_amount(amount_cents), reason),
            namespace=STEP_NAMESPACE,
        )

    def _check_exists(self, action: str) -> None:
        if self.state.status == "new":
            raise AccountNotOpen(self.id, "not opened", action)

    def _check_open(self, action: str) -> None:
        if self.state.status != "open":
            raise AccountNotOpen(
                self.id, "not opened" if self.state.status == "new" else self.state.status, action
            )

    def _check_funds(self, amount: int) -> None:
        if self.state.balance_cents - amount < -self.state.overdraft_limit_cents:
            raise InsufficientFunds(
                self.id, self.state.balance_cents, amount, self.state.overdraft_limit_cents
            )

    # -- appliers ---------------------------------------------------------------------------------

    @applies(AccountOpened)
    def _opened(self, event: AccountOpened) -> None:
        self.state.owner = event.owner
        self.state.status = "open"
        self.state.overdraft_limit_cents = event.overdraft_limit_cents

    @applies(FundsDeposited, TransferCredited, TransferRefunded)
    def _money_in(self, event: FundsDeposited | TransferCredited | TransferRefunded) -> None:
        self.state.balance_cents += event.amount_cents

    @applies(FundsWithdrawn, TransferDebited)
    def _money_out(self, event: FundsWithdrawn | TransferDebited) -> None:
        self.state.balance_cents -= event.amount_cents

    @applies(OverdraftLimitSet)
    def _limit_set(self, event: OverdraftLimitSet) -> None:
        self.state.overdraft_limit_cents = event.limit_cents

    @applies(AccountFrozen)
    def _frozen(self, event: AccountFrozen) -> None:
        self.state.status = "frozen"

    @applies(AccountUnfrozen)
    def _unfrozen(self, event: AccountUnfrozen) -> None:
        self.state.status = "open"

    @applies(AccountClosed)
    def _closed(self, event: AccountClosed) -> None:
        self.state.status = "closed"


class TransferState(msgspec.Struct):
    source: str = ""
    target: str = ""
    amount_cents: int = 0
    reference: str = ""
    status: str = "new"  # initiated | debited | completed | rejected | compensated
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "rejected", "compensated")


class Transfer(Aggregate[TransferState]):
    """One transfer's progress through the process manager: each step recorded once, in order."""

    category = "transfer"

    def initiate(
        self,
        source: str,
        target: str,
        amount_cents: int,
        reference: str = "",
        occurred_at: datetime | None = None,
    ) -> None:
        if self.state.status != "new":
            raise InvalidTransfer(self.id, f"already {self.state.status}")
        if source == target:
            raise InvalidTransfer(self.id, "source and target are the same account")
        emit(
            self,
            "initiate",
            TransferInitiated(source, target, _check_amount(amount_cents), reference),
            occurred_at,
        )

    def source_debited(self) -> None:
        self._expect("initiated")
        emit(self, "debit", TransferSourceDebited())

    def reject(self, reason: str) -> None:
        self._expect("initiated")
        emit(self, "reject", TransferRejected(reason))

    def target_credited(self) -> None:
        self._expect("debited")
        emit(self, "credit", TransferTargetCredited())
        emit(self, "credit", TransferCompleted())

    def compensate(self, reason: str) -> None:
        self._expect("debited")
        emit(self, "compensate", TransferCompensated(reason))

    def _expect(self, status: str) -> None:
        if self.state.status != status:
            raise InvalidTransfer(self.id, f"is {self.state.status}, not {status}")

    @applies(TransferInitiated)
    def _initiated(self, event: TransferInitiated) -> None:
        self.state.source, self.state.target = event.source, event.target
        self.state.amount_cents, self.state.reference = event.amount_cents, event.reference
        self.state.status = "initiated"

    @applies(TransferSourceDebited)
    def _debited(self, event: TransferSourceDebited) -> None:
        self.state.status = "debited"

    @applies(TransferTargetCredited)
    def _credited(self, event: TransferTargetCredited) -> None:
        self.state.status = "credited"

    @applies(TransferCompleted)
    def _completed(self, event: TransferCompleted) -> None:
        self.state.status = "completed"

    @applies(TransferRejected)
    def _rejected(self, event: TransferRejected) -> None:
        self.state.status, self.state.reason = "rejected", event.reason

    @applies(TransferCompensated)
    def _compensated(self, event: TransferCompensated) -> None:
        self.state.status, self.state.reason = "compensated", event.reason
