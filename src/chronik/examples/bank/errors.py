"""The bank's rules, one `DomainError` each: a refused command records nothing."""

from __future__ import annotations

from collections.abc import Mapping

from chronik.errors import DomainError
from chronik.examples.money import euros


class BankError(DomainError):
    """Base class of the bank example's domain errors."""


class InvalidAmount(BankError):
    def __init__(self, amount: object) -> None:
        self.amount = amount
        super().__init__(f"an amount must be whole cents > 0, not {amount!r}")


class AccountNotOpen(BankError):
    def __init__(self, account_id: str, status: str, action: str) -> None:
        self.account_id = account_id
        self.status = status
        self.action = action
        super().__init__(f"account {account_id!r} is {status}: it cannot {action}")


class AccountAlreadyOpened(BankError):
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        super().__init__(f"account {account_id!r} is already opened")


class InsufficientFunds(BankError):
    def __init__(self, account_id: str, balance: int, amount: int, overdraft_limit: int) -> None:
        self.account_id = account_id
        self.balance = balance
        self.amount = amount
        self.overdraft_limit = overdraft_limit
        floor = f"below {euros(-overdraft_limit)}, its overdraft limit" if overdraft_limit else "below zero"
        super().__init__(
            f"account {account_id!r} holds {euros(balance)} (overdraft limit {euros(overdraft_limit)}): "
            f"{euros(amount)} would take it {floor}"
        )


class BalanceNotZero(BankError):
    def __init__(self, account_id: str, balance: int) -> None:
        self.account_id = account_id
        self.balance = balance
        super().__init__(f"account {account_id!r} holds {euros(balance)}: empty it before closing it")


class InvalidTransfer(BankError):
    def __init__(self, transfer_id: str, reason: str) -> None:
        self.transfer_id = transfer_id
        self.reason = reason
        super().__init__(f"transfer {transfer_id!r}: {reason}")


class CommandIdReused(BankError):
    """A command id already recorded for another command: refused, so the second one is not lost.

    `recorded` and `sent` are the two commands' fingerprints (`{"kind": ..., field: value}`), so
    a client (or the HTTP 409 body) can see what the id already stands for.
    """

    def __init__(
        self, command_id: str, stream: str, recorded: Mapping[str, object], sent: Mapping[str, object]
    ) -> None:
        self.command_id = command_id
        self.stream = stream
        self.recorded = dict(recorded)
        self.sent = dict(sent)
        super().__init__(
            f"command id {command_id!r} is already recorded in {stream!r} for {describe(recorded)}, "
            f"not {describe(sent)}: a new command needs a new command id"
        )


def describe(command: Mapping[str, object]) -> str:
    """A command's fingerprint on one line, `deposit(amount_cents=100)`: fields left empty are omitted."""
    fields = ", ".join(f"{k}={v!r}" for k, v in command.items() if k != "kind" and v not in (None, ""))
    return f"{command.get('kind', '?')}({fields})"
