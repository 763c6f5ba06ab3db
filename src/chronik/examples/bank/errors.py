"""The bank's rules, one `DomainError` each: a refused command records nothing."""

from __future__ import annotations

from chronik.errors import DomainError


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
        floor = f"below -{overdraft_limit} cents, its overdraft limit" if overdraft_limit else "below zero"
        super().__init__(
            f"account {account_id!r} holds {balance} cents (overdraft limit {overdraft_limit}): "
            f"{amount} cents would take it {floor}"
        )


class BalanceNotZero(BankError):
    def __init__(self, account_id: str, balance: int) -> None:
        self.account_id = account_id
        self.balance = balance
        super().__init__(f"account {account_id!r} holds {balance} cents: empty it before closing it")


class InvalidTransfer(BankError):
    def __init__(self, transfer_id: str, reason: str) -> None:
        self.transfer_id = transfer_id
        self.reason = reason
        super().__init__(f"transfer {transfer_id!r}: {reason}")
