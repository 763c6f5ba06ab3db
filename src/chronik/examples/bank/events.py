"""The bank's facts. Amounts are whole cents (exact in JSON and arithmetic); business time is the
envelope's `occurred_at`, not a field, so every event can be back-dated the same way.

Account streams (`account-<id>`) hold everything that changes a balance or what an account may
do; transfer streams (`transfer-<id>`) hold the process manager's progress through one transfer.
Money only ever moves in pairs the process manager writes atomically (a debit with its transfer
step, a credit or a refund with the next), so the ledger balances at every commit.
"""

from __future__ import annotations

import msgspec

# -- account-<id> ---------------------------------------------------------------------------------


class AccountOpened(msgspec.Struct, frozen=True):
    owner: str
    overdraft_limit_cents: int = 0


class FundsDeposited(msgspec.Struct, frozen=True):
    amount_cents: int
    description: str = ""


class FundsWithdrawn(msgspec.Struct, frozen=True):
    amount_cents: int
    description: str = ""


class OverdraftLimitSet(msgspec.Struct, frozen=True):
    limit_cents: int


class AccountFrozen(msgspec.Struct, frozen=True):
    reason: str = ""


class AccountUnfrozen(msgspec.Struct, frozen=True):
    pass


class AccountClosed(msgspec.Struct, frozen=True):
    pass


class TransferDebited(msgspec.Struct, frozen=True):
    """Money left this account for a transfer (it is in transit until credited or refunded)."""

    transfer_id: str
    target: str
    amount_cents: int


class TransferCredited(msgspec.Struct, frozen=True):
    transfer_id: str
    source: str
    amount_cents: int


class TransferRefunded(msgspec.Struct, frozen=True):
    """The compensation of a debit whose credit was refused: the money comes back."""

    transfer_id: str
    amount_cents: int
    reason: str


# -- transfer-<id> --------------------------------------------------------------------------------


class TransferInitiated(msgspec.Struct, frozen=True):
    source: str
    target: str
    amount_cents: int
    reference: str = ""


class TransferSourceDebited(msgspec.Struct, frozen=True):
    pass


class TransferTargetCredited(msgspec.Struct, frozen=True):
    pass


class TransferCompleted(msgspec.Struct, frozen=True):
    pass


class TransferRejected(msgspec.Struct, frozen=True):
    """The debit was refused (funds, a frozen or closed source): no money moved."""

    reason: str


class TransferCompensated(msgspec.Struct, frozen=True):
    """The credit was refused after the debit; the source was refunded in the same commit."""

    reason: str


MONEY_IN = ("FundsDeposited", "TransferCredited", "TransferRefunded")
MONEY_OUT = ("FundsWithdrawn", "TransferDebited")
BALANCE_EVENTS = (*MONEY_IN, *MONEY_OUT)


def signed_amount(event_type: str, data: dict[str, object]) -> int:
    """How much an account event moves the balance (0 for events that move no money).

    Read from the raw JSON, so projections and queries agree with the aggregate without importing it.
    """
    amount = data.get("amount_cents")
    if not isinstance(amount, int) or isinstance(amount, bool):
        return 0
    if event_type in MONEY_IN:
        return amount
    if event_type in MONEY_OUT:
        return -amount
    return 0
