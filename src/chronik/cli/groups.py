"""`chronik worker` and `chronik groups ...`: run group members and look after their groups.

Mounted by the main app (`app.add_typer(groups_app, name="groups")`, `app.command("worker")(worker)`);
`python -m chronik.cli.groups` runs the same commands on their own.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
from types import FrameType
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from chronik.cli.help import CliApp
from chronik.cli.stores import StoreOption, fail, opened_store, reported_errors
from chronik.cli.tables import stdout_console
from chronik.groups import (
    DEFAULT_PARTITIONS,
    GroupConfig,
    GroupError,
    GroupHandler,
    GroupMember,
    GroupStatus,
    OnFailure,
    coordinator_for,
    discard_parked,
    group_status,
    list_parked,
    replay_parked,
)
from chronik.store import default_store_url, open_store

groups_app = CliApp(help="Consumer groups: status, parked events, replay.", no_args_is_help=True)
console = stdout_console()

HandlerOption = Annotated[str, typer.Option("--handler", help="The handler as module:function(event, uow).")]


def load_handler(spec: str) -> GroupHandler:
    """Import `module:function`; a bad spec is a usage error, not a traceback."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"write the handler as module:function, not {spec!r}")
    # The user's module is found from the working directory, as `python -m` (and uvicorn) would:
    # the `chronik` script alone puts only its own folder on sys.path.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise typer.BadParameter(f"cannot load handler {spec!r}: {error}") from None
    if not callable(handler):
        raise typer.BadParameter(f"{spec!r} is not callable")
    loaded: GroupHandler = handler
    return loaded


def worker(
    group: Annotated[str, typer.Argument(help="The consumer group to join.")],
    handler: HandlerOption,
    store: StoreOption = None,
    partitions: Annotated[int, typer.Option(help="Partitions of a new group.")] = DEFAULT_PARTITIONS,
    category: Annotated[list[str] | None, typer.Option(help="Only these categories (repeatable).")] = None,
    event_type: Annotated[list[str] | None, typer.Option(help="Only these event types (repeatable).")] = None,
    member_id: Annotated[str | None, typer.Option(help="This member's id (default host-pid-random).")] = None,
    lease_ttl: Annotated[float, typer.Option(help="Seconds a lease lives without a heartbeat.")] = 10.0,
    batch_size: Annotated[int, typer.Option(help="Events read and committed per unit of work.")] = 1000,
    max_attempts: Annotated[int, typer.Option(help="Tries before an event is parked.")] = 5,
    on_failure: Annotated[OnFailure, typer.Option(help="After parking: block the stream or skip.")] = (
        OnFailure.BLOCK_STREAM
    ),
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run one member of a consumer group until SIGTERM or Ctrl-C (then it hands its partitions back)."""
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handle = load_handler(handler)
    with reported_errors():  # a bad URL or an unreachable server: one line, exit 1
        event_store = open_store(store or default_store_url())
    config = GroupConfig(
        name=group,
        partitions=partitions,
        categories=tuple(category or ()),
        event_types=tuple(event_type or ()),
    )
    try:
        member = GroupMember(
            event_store,
            config,
            handle,
            member_id=member_id,
            lease_ttl=lease_ttl,
            batch_size=batch_size,
            max_attempts=max_attempts,
            on_failure=on_failure,
        )
    except GroupError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None

    def stop(signum: int, frame: FrameType | None) -> None:
        member.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log = logging.getLogger(__name__)
    log.info("member %s joins group %r", member.member_id, group)
    try:
        member.run()
    finally:
        event_store.close()
    stats = member.stats
    log.info(
        "member %s left: handled %d, parked %d, rejected commits %d, rebalances %d",
        member.member_id,
        stats.handled,
        stats.parked,
        stats.rejected_commits,
        stats.rebalances,
    )


@groups_app.command("status")
def status(
    group: Annotated[str | None, typer.Argument(help="The consumer group (default: every group).")] = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and metrics).")] = False,
) -> None:
    """Partitions with owners, epochs, leases, checkpoints, lag and parked counts; members."""
    with opened_store(store) as event_store:
        names = [group] if group else [g.name for g in coordinator_for(event_store).list_groups()]
        reports = [group_status(event_store, name) for name in names]
    if as_json:
        typer.echo(json.dumps(msgspec.to_builtins(reports if group is None else reports[0]), indent=2))
        return
    if not reports:
        console.print("no consumer groups")
    for report in reports:
        _print_status(report)


def _print_status(report: GroupStatus) -> None:
    name = report.config.name
    table = Table(title=f"group {name!r}: head {report.head_position}, lag {report.total_lag}")
    for column in ("partition", "owner", "epoch", "lease expires", "checkpoint", "lag", "parked"):
        table.add_column(column)
    for p in report.partitions:
        table.add_row(
            str(p.partition),
            p.owner or "-",
            str(p.epoch),
            p.lease_expires_at.isoformat(timespec="seconds"),
            str(p.checkpoint),
            str(p.lag),
            str(p.parked),
        )
    console.print(table)
    for member in report.members:
        console.print(f"member {member.member}: partitions {list(member.partitions)}")
    if report.unowned:
        console.print(f"[yellow]unowned partitions: {list(report.unowned)}[/yellow]")


@groups_app.command("parked")
def parked(
    group: Annotated[str, typer.Argument(help="The consumer group.")],
    store: StoreOption = None,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Parked events in parking order, with their errors."""
    with opened_store(store) as event_store:
        items = list_parked(event_store, group, stream=stream)
    if as_json:
        typer.echo(json.dumps(msgspec.to_builtins(items), indent=2))
        return
    table = Table(title=f"group {group!r}: {len(items)} parked")
    for column in ("id", "stream", "position", "attempts", "waits behind", "error"):
        table.add_column(column)
    for item in items:
        behind = "-" if item.blocked_by is None else str(item.blocked_by)
        table.add_row(
            str(item.id), item.stream, str(item.global_position), str(item.attempts), behind, item.error
        )
    console.print(table)


@groups_app.command("replay-parked")
def replay(
    group: Annotated[str, typer.Argument(help="The consumer group.")],
    handler: HandlerOption,
    store: StoreOption = None,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    parked_id: Annotated[int | None, typer.Option("--id", help="Only this parked event.")] = None,
) -> None:
    """Run parked events through the handler again, each stream in order; failures stay parked."""
    handle = load_handler(handler)
    with opened_store(store) as event_store:
        result = replay_parked(event_store, group, handle, stream=stream, parked_id=parked_id)
    console.print(f"replayed {len(result.replayed)}, failed {len(result.failed)}")
    for failed_id, error_text in result.failed:
        console.print(f"[red]parked event {failed_id} failed again: {error_text}[/red]")
    if result.failed:
        raise typer.Exit(1)


@groups_app.command("discard-parked")
def discard(
    group: Annotated[str, typer.Argument(help="The consumer group.")],
    parked_ids: Annotated[list[int], typer.Argument(help="Ids of parked events to drop for good.")],
    store: StoreOption = None,
) -> None:
    """Drop parked events without applying them. An id not parked in GROUP is an error (exit 1)."""
    with opened_store(store) as event_store:
        missing = [
            parked_id for parked_id in parked_ids if not discard_parked(event_store, group, [parked_id])
        ]
    dropped = len(parked_ids) - len(missing)
    if missing:
        fail(
            f"discarded {dropped} of {len(parked_ids)}: no parked event "
            f"{', '.join(map(str, missing))} in group {group!r}"
        )
    console.print(f"discarded {dropped} of {len(parked_ids)}")


def standalone_app() -> typer.Typer:
    """The commands as their own app, mounted the way the main app mounts them."""
    app = CliApp(no_args_is_help=True)
    app.add_typer(groups_app, name="groups")
    app.command("worker")(worker)
    return app


if __name__ == "__main__":
    standalone_app()()
