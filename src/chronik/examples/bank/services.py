"""The bank's operations: idempotent commands, and the transfer process manager (a saga).

A transfer is four recorded steps: initiate (the customer's command), debit the source, credit the
target, complete. The process manager is a consumer-group handler reacting to the transfer's own
events. Each step it takes commits in one unit of work with the group's fenced checkpoint: the
account's event and the transfer's next step are written together or not at all, and a step is
never taken twice (a retried step finds the transfer already past it, and its event ids are
derived from the transfer id, so even a re-sent append is acknowledged rather than doubled).

If the credit is refused (the target is frozen or closed), the debit is compensated: the source is
refunded in the same unit of work that records `TransferCompensated`. Money is therefore only ever
"in transit" between two committed steps, and `queries.check_ledger` can account for every cent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import msgspec

from chronik.domain import Aggregate, AggregateNotFound, Repository, aggregates
from chronik.domain.repository import register_events
from chronik.errors import DuplicateEventId
from chronik.events.envelope import NO_STREAM, RecordedEvent
from chronik.examples.bank.errors import BankError, CommandIdReused
from chronik.examples.bank.model import Account, Transfer, command_event_id
from chronik.groups import GroupConfig, GroupMember
from chronik.store import EventStore, UnitOfWork

TRANSFER_GROUP: Final = "bank-transfers"
TRANSFER_STEPS: Final = ("TransferInitiated", "TransferSourceDebited")
"""The transfer events the process manager reacts to (the others end a transfer)."""

A = TypeVar("A", bound=Aggregate[Any])


class CommandResult(msgspec.Struct, frozen=True):
    """What a command did: the stream's version afterwards, and whether it had been done before."""

    stream: str
    version: int | None
    already_done: bool = False


def transfer_group(name: str = TRANSFER_GROUP, partitions: int = 16) -> GroupConfig:
    return GroupConfig(name=name, partitions=partitions, categories=("transfer",), event_types=TRANSFER_STEPS)


class Bank:
    """The bank's command side over one store. Amounts are whole cents; ids are caller-chosen strings.

    Every command takes a `command_id`: sending the same command again (a client that timed out and
    retries) is acknowledged (`CommandResult.already_done`) and changes nothing; sending another
    command under a used id (another amount, kind or account of a transfer) is refused with
    `CommandIdReused` and records nothing, so the second command is never silently dropped. Business time
    (`occurred_at`) defaults to the moment the store records the event; pass it to back-date an
    entry (a deposit made at a branch last March, entered today).
    """

    def __init__(self, store: EventStore, *, actor: str = "bank") -> None:
        self.store = store
        self.repository = aggregates.repository(store)
        self.actor = actor

    # -- accounts ------------------------------------------------------------------------------

    def open_account(
        self,
        account_id: str,
        owner: str,
        *,
        command_id: str,
        overdraft_limit_cents: int = 0,
        occurred_at: datetime | None = None,
    ) -> CommandResult:
        return self._run(
            Account,
            account_id,
            command_id,
            lambda a: a.open(command_id, owner, overdraft_limit_cents, occurred_at),
            fingerprint(
                "open_account",
                owner=owner,
                overdraft_limit_cents=overdraft_limit_cents,
                occurred_at=occurred_at,
            ),
            create=True,
        )

    def deposit(
        self,
        account_id: str,
        amount_cents: int,
        *,
        command_id: str,
        description: str = "",
        occurred_at: datetime | None = None,
    ) -> CommandResult:
        return self._run(
            Account,
            account_id,
            command_id,
            lambda a: a.deposit(command_id, amount_cents, description, occurred_at),
            fingerprint(
                "deposit", amount_cents=amount_cents, description=description, occurred_at=occurred_at
            ),
        )

    def withdraw(
        self,
        account_id: str,
        amount_cents: int,
        *,
        command_id: str,
        description: str = "",
        occurred_at: datetime | None = None,
    ) -> CommandResult:
        return self._run(
            Account,
            account_id,
            command_id,
            lambda a: a.withdraw(command_id, amount_cents, description, occurred_at),
            fingerprint(
                "withdraw", amount_cents=amount_cents, description=description, occurred_at=occurred_at
            ),
        )

    def set_overdraft_limit(self, account_id: str, limit_cents: int, *, command_id: str) -> CommandResult:
        return self._run(
            Account,
            account_id,
            command_id,
            lambda a: a.set_overdraft_limit(command_id, limit_cents),
            fingerprint("set_overdraft_limit", limit_cents=limit_cents),
        )

    def freeze(self, account_id: str, *, command_id: str, reason: str = "") -> CommandResult:
        return self._run(
            Account,
            account_id,
            command_id,
            lambda a: a.freeze(command_id, reason),
            fingerprint("freeze", reason=reason),
        )

    def unfreeze(self, account_id: str, *, command_id: str) -> CommandResult:
        return self._run(
            Account, account_id, command_id, lambda a: a.unfreeze(command_id), fingerprint("unfreeze")
        )

    def close(self, account_id: str, *, command_id: str) -> CommandResult:
        return self._run(Account, account_id, command_id, lambda a: a.close(command_id), fingerprint("close"))

    # -- transfers -----------------------------------------------------------------------------

    def initiate_transfer(
        self,
        transfer_id: str,
        source: str,
        target: str,
        amount_cents: int,
        *,
        reference: str = "",
        occurred_at: datetime | None = None,
    ) -> CommandResult:
        """Record the customer's request; the process manager moves the money (`process_transfers`).

        The transfer id is the command id, and the correlation id of every event the transfer causes
        in any stream (`store.read_correlated(transfer_id)` is its audit trail). Sending it again
        with the same accounts, amount and reference is acknowledged; with anything else it is
        refused (`CommandIdReused`).
        """
        return self._run(
            Transfer,
            transfer_id,
            "initiate",
            lambda t: t.initiate(source, target, amount_cents, reference, occurred_at),
            fingerprint(
                "initiate_transfer",
                source=source,
                target=target,
                amount_cents=amount_cents,
                reference=reference,
                occurred_at=occurred_at,
            ),
            create=True,
            correlation_id=transfer_id,
        )

    def process_transfers(self, *, member_id: str | None = None, group: str = TRANSFER_GROUP) -> None:
        """Run the process manager until every transfer recorded so far is finished (then leave the group)."""
        transfer_manager(self.store, member_id=member_id, group=group).run(until_idle=True)

    def transfer(
        self, transfer_id: str, source: str, target: str, amount_cents: int, **kwargs: Any
    ) -> Transfer:
        """Initiate a transfer and drive it to its end in this process; returns its final state."""
        self.initiate_transfer(transfer_id, source, target, amount_cents, **kwargs)
        self.process_transfers()
        return self.repository.load(Transfer, transfer_id)

    # -- reading -------------------------------------------------------------------------------

    def account(self, account_id: str) -> Account:
        return self.repository.load(Account, account_id)

    def transfer_state(self, transfer_id: str) -> Transfer:
        return self.repository.load(Transfer, transfer_id)

    # -- the idempotent command loop -------------------------------------------------------------

    def _run(
        self,
        aggregate_class: type[A],
        id: str,
        command_id: str,
        decide: Callable[[A], None],
        command: dict[str, object],
        *,
        create: bool = False,
        correlation_id: str | None = None,
    ) -> CommandResult:
        """Run `decide` once per command id: a re-send is acknowledged, a different command refused.

        The id of the command's first event is derived from `command_id` (`command_event_id`), so
        "was this id used?" is one look-up. That alone cannot tell a re-send from another command
        under the same id (a deposit of 999 after one of 100, a withdrawal after a deposit), and
        acknowledging the latter would drop it silently. The recorded event's data does not tell
        either: it lacks the caller's `occurred_at` (recorded as the recording time when none was
        given), and a command may record nothing. So the command's own fields, its `fingerprint`,
        ride in the metadata of the events it records (`metadata["command"]`), and a used id is
        acknowledged only when the fingerprint sent equals the one recorded.
        """
        stream = aggregate_class.stream_name(id)
        first_id = command_event_id(stream, command_id, 0)

        def done_before() -> CommandResult | None:
            found = self.store.find_events([first_id])
            if not found:
                return None
            version = found[0].stream_version
            recorded = self.store.read_stream(found[0].stream, from_version=version, to_version=version)
            if recorded and not _same_command(recorded[0], command):
                raise CommandIdReused(command_id, stream, _recorded_command(recorded[0]), command)
            return CommandResult(stream, self.store.stream_version(stream), True)

        if (earlier := done_before()) is not None:
            return earlier
        metadata: dict[str, object] = {"actor": self.actor, "command_id": command_id, "command": command}
        if correlation_id is not None:
            metadata["correlation_id"] = correlation_id

        try:
            aggregate, appended = self.repository.execute(
                aggregate_class, id, decide, metadata=metadata, create=create
            )
        except DuplicateEventId:
            # A concurrent send of the same command id won the race; ours is its retry, or refused.
            if (earlier := done_before()) is not None:
                return earlier
            raise
        # A concurrent send of this id appended the same event ids at the same place first, and the
        # store acknowledged ours as its retry without looking at the data: compare here.
        if appended.already_recorded and (earlier := done_before()) is not None:
            return earlier
        return CommandResult(stream, aggregate.version)


def fingerprint(kind: str, **fields: object) -> dict[str, object]:
    """What a command is, as JSON: its kind and every field that changes what it records.

    The account or transfer id is not among them: it is part of the event ids already, so the
    same command id on another account is another command, never a reuse. Business times are
    compared as instants (normalized to UTC), whatever zone the caller wrote them in.
    """
    return {
        "kind": kind,
        **{
            name: (value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat())
            if isinstance(value, datetime)
            else value
            for name, value in fields.items()
        },
    }


LEGACY_KINDS: Final = {
    "AccountOpened": "open_account",
    "FundsDeposited": "deposit",
    "FundsWithdrawn": "withdraw",
    "OverdraftLimitSet": "set_overdraft_limit",
    "AccountFrozen": "freeze",
    "AccountUnfrozen": "unfreeze",
    "AccountClosed": "close",
    "TransferInitiated": "initiate_transfer",
}
"""The command behind each first event, for events recorded before fingerprints were kept."""


def _recorded_command(event: RecordedEvent) -> dict[str, object]:
    """The fingerprint of the command that recorded `event`.

    Events recorded before fingerprints were kept have none: their command is read back from the
    event's type and data (whose fields carry the commands' own names), all but `occurred_at`.
    """
    recorded = event.metadata.get("command")
    if isinstance(recorded, dict):
        return recorded
    return {"kind": LEGACY_KINDS.get(event.type, event.type), **event.data}


def _same_command(event: RecordedEvent, sent: Mapping[str, object]) -> bool:
    recorded = _recorded_command(event)
    if "command" in event.metadata:
        return recorded == sent
    return all(sent.get(name) == value for name, value in recorded.items())  # the fields it has


# -- the process manager ------------------------------------------------------------------------


def save_in(
    uow: UnitOfWork, repository: Repository, aggregate: Aggregate[Any], metadata: Mapping[str, Any]
) -> None:
    """Append an aggregate's pending events through `uow` (the group's unit of work), version-checked."""
    register_events(repository.codec, type(aggregate))
    events = [
        repository.codec.to_new_event(
            p.event, metadata=metadata, event_id=p.event_id, occurred_at=p.occurred_at
        )
        for p in aggregate.pending
    ]
    if not events:
        return
    expected = NO_STREAM if aggregate.version is None else aggregate.version
    result = uow.append(aggregate.stream, events, expected)
    aggregate.mark_saved(result.stream_version)


class TransferProcessManager:
    """The consumer-group handler that takes each transfer one step further.

    It reads the transfer's current state rather than trusting the event it was handed: an event
    delivered again (at-least-once) finds the transfer already past that step and does nothing.
    """

    def __init__(self, store: EventStore) -> None:
        self.repository = aggregates.repository(store)

    def __call__(self, event: RecordedEvent, uow: UnitOfWork) -> None:
        transfer = self.repository.load(Transfer, event.stream.partition("-")[2])
        metadata = {
            "correlation_id": event.correlation_id or transfer.id,
            "causation_id": str(event.event_id),
            "actor": "transfer-manager",
        }
        state = transfer.state
        if event.type == "TransferInitiated" and state.status == "initiated":
            try:
                source = self.repository.load(Account, state.source)
                source.debit_for_transfer(transfer.id, state.target, state.amount_cents)
            except (BankError, AggregateNotFound) as refused:
                transfer.reject(str(refused))
                save_in(uow, self.repository, transfer, metadata)
                return
            transfer.source_debited()
            save_in(uow, self.repository, source, metadata)
            save_in(uow, self.repository, transfer, metadata)
        elif event.type == "TransferSourceDebited" and state.status == "debited":
            try:
                target = self.repository.load(Account, state.target)
                target.credit_for_transfer(transfer.id, state.source, state.amount_cents)
            except (BankError, AggregateNotFound) as refused:
                source = self.repository.load(Account, state.source)
                source.refund_transfer(transfer.id, state.amount_cents, str(refused))
                transfer.compensate(str(refused))
                save_in(uow, self.repository, source, metadata)
                save_in(uow, self.repository, transfer, metadata)
                return
            transfer.target_credited()
            save_in(uow, self.repository, target, metadata)
            save_in(uow, self.repository, transfer, metadata)


def transfer_manager(
    store: EventStore,
    *,
    member_id: str | None = None,
    group: str = TRANSFER_GROUP,
    lease_ttl: float = 10.0,
    poll_interval: float = 0.05,
) -> GroupMember:
    """A member of the transfer process manager's group (run it in as many processes as you like).

    Retries are generous: on a server database two members can race for one account (a version
    conflict), and the member's retry on fresh state is the resolution, never parking the transfer.
    """
    return GroupMember(
        store,
        transfer_group(group),
        TransferProcessManager(store),
        member_id=member_id,
        lease_ttl=lease_ttl,
        max_attempts=50,
        backoff=0.01,
        max_backoff=0.2,
        poll_interval=poll_interval,
    )
