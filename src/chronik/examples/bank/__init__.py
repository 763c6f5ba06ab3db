"""The bank example: accounts, a ledger of events, transfers by a process manager, a time machine.

Importing this package registers `Account` ("account") and `Transfer` ("transfer") with chronik's
aggregate registry, so `chronik state account-<id>` can show them, and its projections by name.

    bank = Bank(store)
    bank.open_account("alice", "Alice", command_id="open-alice")
    bank.deposit("alice", 10_000, command_id="dep-1")
    bank.transfer("t-1", "alice", "bob", 2_500)       # initiate + run the process manager
    queries.balance_as_of(store, "alice", occurred_at=five_years_ago)
"""

from chronik.domain import register_aggregate
from chronik.examples.bank import queries
from chronik.examples.bank.errors import (
    AccountAlreadyOpened,
    AccountNotOpen,
    BalanceNotZero,
    BankError,
    CommandIdReused,
    InsufficientFunds,
    InvalidAmount,
    InvalidTransfer,
)
from chronik.examples.bank.model import Account, AccountState, Transfer, TransferState, command_event_id
from chronik.examples.bank.projections import AccountBalances, MonthlyStatements, MonthSummary
from chronik.examples.bank.services import (
    TRANSFER_GROUP,
    Bank,
    CommandResult,
    TransferProcessManager,
    transfer_group,
    transfer_manager,
)

register_aggregate(Account)
register_aggregate(Transfer)

__all__ = [
    "TRANSFER_GROUP",
    "Account",
    "AccountAlreadyOpened",
    "AccountBalances",
    "AccountNotOpen",
    "AccountState",
    "BalanceNotZero",
    "Bank",
    "BankError",
    "CommandIdReused",
    "CommandResult",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidTransfer",
    "MonthSummary",
    "MonthlyStatements",
    "Transfer",
    "TransferProcessManager",
    "TransferState",
    "command_event_id",
    "queries",
    "transfer_group",
    "transfer_manager",
]
