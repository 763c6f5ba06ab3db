"""The bank example over HTTP: accounts, deposits and withdrawals, transfers, statements, the time machine.

Every command goes through `chronik.examples.bank.Bank`, so the bank's rules hold here exactly as
in Python: a command carries a `command_id`, and sending it again (a client that timed out and
retries) is acknowledged with `already_done: true` and moves no money twice, while another command
under a used id is a 409 (`CommandIdReused`, with both commands in the body). A transfer is only
*initiated* here; the transfer process manager (a consumer group, `bank-transfers`, run by
`chronik serve --demo` or any process calling `Bank.process_transfers`) moves the money, so a
transfer's status is read back from its own stream.

Balances and statements are read from the accounts' own events, so they can be asked "as of" a
business time (`occurred_at`: what was true in the world) or a recorded time (`recorded_at`,
`known_at`: what the bank knew then). The account list and the monthly summaries come from the
bank's projections, caught up before each answer (they include every event written before the
request, whether or not a projection runner is running).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

import msgspec
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from chronik.errors import AggregateNotFound
from chronik.examples.bank import AccountBalances, Bank, CommandIdReused, CommandResult, Transfer, queries
from chronik.projections import Projection, catch_up
from chronik.server.context import AppendKey, AppPage, ReadKey, ServerState, StateDep, check_stream_access
from chronik.server.models import NO_NUL, NOT_A_BOOL, EntityId, Time
from chronik.server.openapi import UNDECODABLE, problems
from chronik.server.problems import Problem
from chronik.server.routes.projections import projection_for

router = APIRouter(prefix="/api/bank", tags=["bank example"], responses=problems(503, UNDECODABLE))
NO_ACCOUNT: Final = (404, "No such account, or not yet at that moment.")
NO_SQL: Final = (501, "The bank's read models are projections: not on `memory://`.")
REFUSED: Final = (
    409,
    "The bank refused it (`error`: InsufficientFunds, AccountNotOpen, AccountAlreadyOpened, "
    "InvalidTransfer), or the command id is taken by another command (`CommandIdReused`).",
)
page = AppPage(
    name="bank",
    title="Bank",
    description="An example bank: a ledger of accounts, transfers, statements and balances over time.",
)

CommandId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-/]+$")]
Cents = Annotated[int, Field(ge=1, le=10**12), NOT_A_BOOL]
Text = Annotated[str, Field(max_length=200, pattern=NO_NUL)]  # kept in the events' metadata too


class OpenAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: EntityId
    owner: Text = Field(min_length=1)
    command_id: CommandId
    overdraft_limit_cents: Annotated[int, Field(ge=0, le=10**12), NOT_A_BOOL] = 0
    occurred_at: Time | None = None


class MoneyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_cents: Cents
    command_id: CommandId
    description: Text = ""
    occurred_at: Time | None = Field(
        default=None, description="business time, to back-date an entry (default: when it is recorded)"
    )


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transfer_id: EntityId = Field(
        description="the transfer's id, also its command id: re-sending it changes nothing"
    )
    source: EntityId
    target: EntityId
    amount_cents: Cents
    reference: Text = ""


def _bank(key_name: str, state: ServerState) -> Bank:
    return Bank(state.store, actor=key_name or "api")


def _command(run: Callable[[], CommandResult]) -> dict[str, Any]:
    """Run a bank command; a reused command id is a 409 of its own kind (`Command id reused`, with
    both commands), not a refusal of the command by the rules: the client picks a new id, not
    other values."""
    try:
        result = run()
    except CommandIdReused as reused:
        raise Problem(
            409,
            "Command id reused",
            str(reused),
            error="CommandIdReused",
            command_id=reused.command_id,
            stream=reused.stream,
            recorded=reused.recorded,
            sent=reused.sent,
        ) from reused
    out: dict[str, Any] = msgspec.to_builtins(result)
    return out


def _fresh(state: ServerState, name: str) -> Projection:
    """The server's instance of a bank projection, with every event written so far applied."""
    projection = projection_for(state, name)
    catch_up(projection)
    return projection


def _balance(state: ServerState, account_id: str) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(queries.balance_as_of(state.store, account_id))
    return out


# -- accounts -----------------------------------------------------------------------------------------


@router.get("/accounts", summary="Accounts with their balances", responses=problems(NO_SQL))
def list_accounts(
    state: StateDep,
    key: ReadKey,
    prefix: Annotated[str, Query(max_length=100)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """From the `bank_accounts` projection, by account id; `total_balance_cents` sums the page."""
    check_stream_access(key, "account-")
    projection = _fresh(state, "bank_accounts")
    assert isinstance(projection, AccountBalances)
    rows = queries.accounts(state.store, prefix=prefix, limit=limit)
    return {
        "accounts": msgspec.to_builtins(rows),
        "total_balance_cents": sum(row.balance_cents for row in rows),
        "position": projection.position(),
    }


@router.post("/accounts", summary="Open an account", responses=problems(REFUSED))
def open_account(body: OpenAccountIn, state: StateDep, key: AppendKey) -> dict[str, Any]:
    """409 (`AccountAlreadyOpened`) if another command took the id; the same command again is acknowledged.

    409 (`CommandIdReused`) if the command id already opened it for another owner or limit.
    """
    check_stream_access(key, f"account-{body.account_id}")
    result = _command(
        lambda: _bank(key.name, state).open_account(
            body.account_id,
            body.owner,
            command_id=body.command_id,
            overdraft_limit_cents=body.overdraft_limit_cents,
            occurred_at=body.occurred_at,
        )
    )
    return {**result, "account": _balance(state, body.account_id)}


@router.get(
    "/accounts/{account_id}",
    summary="An account's balance, now or as of a moment",
    responses=problems(NO_ACCOUNT),
)
def account_balance(
    account_id: EntityId,
    state: StateDep,
    key: ReadKey,
    occurred_at: Annotated[
        Time | None, Query(description="business time: what was true in the world then")
    ] = None,
    recorded_at: Annotated[Time | None, Query(description="recorded time: what the bank knew then")] = None,
) -> dict[str, Any]:
    """Replays the account's events up to the moment; 404 if it did not exist (yet) then.

    Both times together: what the bank, at `recorded_at`, believed the balance was at `occurred_at`.
    """
    check_stream_access(key, f"account-{account_id}")
    balance = queries.balance_as_of(state.store, account_id, occurred_at=occurred_at, recorded_at=recorded_at)
    out: dict[str, Any] = msgspec.to_builtins(balance)
    return out


@router.post(
    "/accounts/{account_id}/deposits", summary="Deposit money", responses=problems(NO_ACCOUNT, REFUSED)
)
def deposit(account_id: EntityId, body: MoneyIn, state: StateDep, key: AppendKey) -> dict[str, Any]:
    return _move_money("deposit", account_id, body, state, key)


@router.post(
    "/accounts/{account_id}/withdrawals", summary="Withdraw money", responses=problems(NO_ACCOUNT, REFUSED)
)
def withdraw(account_id: EntityId, body: MoneyIn, state: StateDep, key: AppendKey) -> dict[str, Any]:
    """409 (`InsufficientFunds`) when the balance would go below minus the overdraft limit."""
    return _move_money("withdraw", account_id, body, state, key)


def _move_money(
    kind: Literal["deposit", "withdraw"], account_id: str, body: MoneyIn, state: ServerState, key: AppendKey
) -> dict[str, Any]:
    check_stream_access(key, f"account-{account_id}")
    bank = _bank(key.name, state)
    command = bank.deposit if kind == "deposit" else bank.withdraw
    result = _command(
        lambda: command(
            account_id,
            body.amount_cents,
            command_id=body.command_id,
            description=body.description,
            occurred_at=body.occurred_at,
        )
    )
    return {**result, "account": _balance(state, account_id)}


@router.get(
    "/accounts/{account_id}/statement",
    summary="A statement of a period, as known at a moment",
    responses=problems(NO_ACCOUNT),
)
def account_statement(
    account_id: EntityId,
    state: StateDep,
    key: ReadKey,
    start: Annotated[Time | None, Query(description="business time, inclusive")] = None,
    end: Annotated[Time | None, Query(description="business time, inclusive")] = None,
    known_at: Annotated[
        Time | None, Query(description="recorded time: the statement as it would have been printed then")
    ] = None,
) -> dict[str, Any]:
    """Lines in business-time order, each with the running balance (the console's chart draws them)."""
    check_stream_access(key, f"account-{account_id}")
    found = queries.statement(state.store, account_id, start=start, end=end, known_at=known_at)
    out: dict[str, Any] = msgspec.to_builtins(found)
    return out


@router.get(
    "/accounts/{account_id}/months",
    summary="Monthly summaries by business time",
    responses=problems((404, "No such account."), NO_SQL),
)
def account_months(account_id: EntityId, state: StateDep, key: ReadKey) -> dict[str, Any]:
    """From the `bank_monthly_statements` projection; 404 for an account that was never opened."""
    check_stream_access(key, f"account-{account_id}")
    if state.store.stream_version(f"account-{account_id}") is None:
        raise AggregateNotFound(f"account-{account_id}")
    _fresh(state, "bank_monthly_statements")
    return {
        "account_id": account_id,
        "months": msgspec.to_builtins(queries.monthly_statements(state.store, account_id)),
    }


# -- transfers ----------------------------------------------------------------------------------------


def _transfer_out(transfer: Transfer) -> dict[str, Any]:
    return {"transfer_id": transfer.id, "version": transfer.version, **transfer.to_dict()}


@router.get("/transfers", summary="Recent transfers")
def list_transfers(
    state: StateDep,
    key: ReadKey,
    account: Annotated[
        str | None, Query(max_length=100, description="only those from or to this account")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """The most recently changed transfers first, with their status (read from each transfer's stream)."""
    check_stream_access(key, "transfer-")
    streams = sorted(
        state.store.list_streams(prefix="transfer-", limit=10_000),
        key=lambda info: info.last_recorded_at,
        reverse=True,
    )
    bank = Bank(state.store)
    transfers = []
    for info in streams:
        transfer = bank.transfer_state(info.stream.partition("-")[2])
        if account is not None and account not in (transfer.state.source, transfer.state.target):
            continue
        transfers.append({**_transfer_out(transfer), "updated_at": info.last_recorded_at.isoformat()})
        if len(transfers) >= limit:
            break
    return {"transfers": transfers}


@router.post("/transfers", summary="Initiate a transfer", responses=problems(REFUSED))
def initiate_transfer(body: TransferIn, state: StateDep, key: AppendKey) -> dict[str, Any]:
    """Records `TransferInitiated`; the process manager debits, credits (or refunds) shortly after.

    Follow it on `GET /api/bank/transfers/{id}`. A transfer refused for lack of funds or a frozen
    account is *rejected* there, not here: the rules are the accounts', checked when the money moves.
    """
    check_stream_access(key, f"transfer-{body.transfer_id}")
    result = _command(
        lambda: _bank(key.name, state).initiate_transfer(
            body.transfer_id, body.source, body.target, body.amount_cents, reference=body.reference
        )
    )
    transfer = Bank(state.store).transfer_state(body.transfer_id)
    return {**result, "transfer": _transfer_out(transfer)}


@router.get(
    "/transfers/{transfer_id}",
    summary="A transfer's status and its audit trail",
    responses=problems((404, "No such transfer.")),
)
def transfer_detail(transfer_id: EntityId, state: StateDep, key: ReadKey) -> dict[str, Any]:
    """The trail is every event the transfer caused, in every stream, in log order (its correlation id)."""
    check_stream_access(key, f"transfer-{transfer_id}")
    transfer = Bank(state.store).transfer_state(transfer_id)
    trail = queries.transfer_trail(state.store, transfer_id)
    if not all(key.allows_stream(entry.stream) for entry in trail):
        raise Problem(
            403, "Forbidden", f"the trail of {transfer_id!r} reaches streams the key {key.name!r} cannot read"
        )
    return {"transfer": _transfer_out(transfer), "trail": msgspec.to_builtins(trail)}


# -- the books ----------------------------------------------------------------------------------------


@router.get("/ledger", summary="The books, recomputed from the log", responses=problems(NO_SQL))
def ledger(state: StateDep, key: ReadKey) -> dict[str, Any]:
    """Balances + in transit = deposits - withdrawals; nobody overdrawn; the projection agrees."""
    check_stream_access(key, "account-")
    check_stream_access(key, "transfer-")
    projection = _fresh(state, "bank_accounts")
    assert isinstance(projection, AccountBalances)
    check = queries.check_ledger(state.store, projection=projection)
    return {**msgspec.to_builtins(check), "balanced": check.balanced, "ok": check.ok}
