"""A small aggregate for the domain tests: an account that refuses to go below zero."""

from __future__ import annotations

from datetime import datetime

import msgspec

from chronik.domain import Aggregate, DomainError, applies


class Opened(msgspec.Struct):
    owner: str


class Deposited(msgspec.Struct):
    amount: int


class Withdrawn(msgspec.Struct):
    amount: int


class InsufficientFunds(DomainError):
    def __init__(self, balance: int, amount: int) -> None:
        self.balance = balance
        self.amount = amount
        super().__init__(f"cannot withdraw {amount} from a balance of {balance}")


class AccountState(msgspec.Struct):
    owner: str = ""
    balance: int = 0
    movements: list[int] = msgspec.field(default_factory=list)


class Account(Aggregate[AccountState]):
    category = "account"
    snapshot_every = 3

    def open(self, owner: str) -> None:
        self.record(Opened(owner))

    def deposit(self, amount: int, *, occurred_at: datetime | None = None) -> None:
        self.record(Deposited(amount), occurred_at=occurred_at)

    def withdraw(self, amount: int) -> None:
        if amount > self.state.balance:
            raise InsufficientFunds(self.state.balance, amount)
        self.record(Withdrawn(amount))

    @applies(Opened)
    def _opened(self, event: Opened) -> None:
        self.state.owner = event.owner

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.state.balance += event.amount
        self.state.movements.append(event.amount)

    @applies(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.state.balance -= event.amount
        self.state.movements.append(-event.amount)
