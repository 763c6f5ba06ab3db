"""The `chronik` command: append, read, audit and hydrate streams from a shell, and run the demos.

Exit codes (docs/CLI.md, for every command): 0 done; 1 the request was understood but refused or
failed, or what it names was not found (bad JSON, unknown stream, group or projection, a
concurrent write); 2 the command line itself is wrong (typer's usage errors, a time that is not
one). A user's mistake is a one-line message on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from datetime import datetime
from importlib.metadata import version as package_version
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console

import chronik.examples.cart  # noqa: F401 - registers the bundled examples' aggregates for `state`
from chronik.cli.audit import keygen_command, seal_command, trace_command, verify_command
from chronik.cli.demo_bank import run_bank_demo  # (the bank and video demos import their examples too)
from chronik.cli.demo_cart import run_cart_demo
from chronik.cli.demo_video import run_video_demo
from chronik.cli.groups import groups_app, worker
from chronik.cli.help import CliApp
from chronik.cli.projections import projections_app, reconcile_command
from chronik.cli.serve import keys_app, serve
from chronik.cli.stores import (
    CommandFailed,
    StoreOption,
    demo_store_option,
    demo_store_url,
    opened_store,
    reported_errors,
    usage_error,
)
from chronik.cli.tables import history_table, print_events, stdout_console
from chronik.cli.video import video_app
from chronik.domain import aggregates
from chronik.errors import InvalidExpectedVersion, InvalidInput
from chronik.events.envelope import ExpectedVersion, NewEvent, parse_expected_version, parse_time

app = CliApp(
    name="chronik",
    help="An event store you can talk to: append, read, audit and time-travel streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demo_app = CliApp(
    help="Narrated runs of the example applications: a shopping cart, a bank, a video pipeline.",
    no_args_is_help=True,
)

# `chronik --help` lists the commands in these panels, so a reader finds one by what it is for.
LOG = "The log"
AUDIT = "Audit and read models"
WORKERS = "Workers and consumer groups"
SERVER = "Server"
EXAMPLES = "Example applications"

out = stdout_console()

_encode = msgspec.json.Encoder().encode


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as error:
        raise CommandFailed(f"{what} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise CommandFailed(f"{what} must be a JSON object ({{...}}), not {type(value).__name__}")
    return value


def parse_moment(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time on a date chronik takes (`envelope.parse_time`; no zone: UTC).

    A time that is not one, or out of range, is a wrong command line: one line, exit code 2.
    """
    if text is None:
        return None
    try:
        return parse_time(text, option)
    except InvalidInput as error:
        usage_error(str(error))


def compact(value: Any) -> str:
    return _encode(value).decode()


def _print_version(value: bool) -> None:
    if value:
        out.print(f"chronik {package_version('chronik')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print chronik's version."),
    ] = False,
) -> None:
    """The options of `chronik` itself (its help text is the app's)."""


# -- commands ----------------------------------------------------------------------------------


@app.command(rich_help_panel=LOG)
def append(
    stream: Annotated[str, typer.Argument(help="Stream name, e.g. cart-42.")],
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type, e.g. ItemAdded.")],
    data: Annotated[
        str,
        typer.Argument(metavar="[DATA_JSON]", help='Event data as a JSON object; "-" reads it from stdin.'),
    ] = "{}",
    expected_version: Annotated[
        str,
        typer.Option(
            "--expected-version",
            "-e",
            help="any, no_stream, stream_exists, or the stream's current version N.",
        ),
    ] = "any",
    metadata: Annotated[str | None, typer.Option(help="Metadata as a JSON object.")] = None,
    actor: Annotated[str | None, typer.Option(help="Who did it (stored as metadata.actor).")] = None,
    occurred_at: Annotated[
        str | None, typer.Option("--occurred-at", help="Business time (ISO 8601); default: now.")
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Append one event to a stream."""
    try:
        expected: ExpectedVersion = parse_expected_version(expected_version)
    except InvalidExpectedVersion as error:
        raise typer.BadParameter(str(error), param_hint="--expected-version") from None
    moment = parse_moment(occurred_at, "--occurred-at")
    with reported_errors():
        payload = parse_json_object(sys.stdin.read() if data == "-" else data, "DATA_JSON")
        meta = parse_json_object(metadata, "--metadata") if metadata is not None else {}
    if actor is not None:
        meta["actor"] = actor
    event = NewEvent(type=event_type, data=payload, metadata=meta or None, occurred_at=moment)
    with opened_store(store_url, create=True) as store:
        result = store.append(stream, [event], expected)
    out.print(
        f"appended [bold]{event_type}[/] to [bold]{stream}[/] at version {result.stream_version} "
        f"(global position {result.last_position})"
        + (" - already recorded, nothing written" if result.already_recorded else ""),
        highlight=False,
    )


@app.command(rich_help_panel=LOG)
def read(
    stream: Annotated[str | None, typer.Argument(help="Stream name (omit it with --all).")] = None,
    all_streams: Annotated[bool, typer.Option("--all", help="Read the whole log in global order.")] = False,
    start: Annotated[
        int | None,
        typer.Option("--from", min=0, help="First stream version (or global position with --all)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many events.")] = None,
    backwards: Annotated[bool, typer.Option(help="Newest first (one stream only).")] = False,
    category: Annotated[list[str] | None, typer.Option(help="With --all: only these categories.")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="With --all: only these event types.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    store_url: StoreOption = None,
) -> None:
    """Read a stream's events, or with --all the whole log."""
    if all_streams == (stream is not None):
        raise typer.BadParameter("give a STREAM or --all (not both)", param_hint="STREAM / --all")
    if all_streams and backwards:
        raise typer.BadParameter(
            "--backwards reads one stream; --all is in global order", param_hint="--backwards"
        )
    if not all_streams and (category or event_type):
        raise typer.BadParameter("--category and --type filter --all", param_hint="--category / --type")
    with opened_store(store_url) as store:
        if stream is not None:
            events = store.read_stream(stream, from_version=start, backwards=backwards, limit=limit)
        else:
            events = store.read_all(start or 0, categories=category, event_types=event_type, limit=limit)
    if as_json:
        for event in events:
            out.out(compact(event.to_dict()), highlight=False)
        return
    print_events(out, events, title=stream or "all streams")


@app.command(rich_help_panel=AUDIT)
def history(
    stream: Annotated[str, typer.Argument(help="Stream name.")],
    store_url: StoreOption = None,
) -> None:
    """The audit trail of a stream: who did what, when, and because of what."""
    with opened_store(store_url) as store:
        events = store.read_stream(stream)
    out.print(history_table(stream, events))


@app.command(rich_help_panel=LOG)
def state(
    stream: Annotated[str, typer.Argument(help="Stream name, e.g. cart-42.")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="What the store knew at this time (ISO 8601).")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", min=0, help="As of this stream version.")
    ] = None,
    occurred_as_of: Annotated[
        str | None,
        typer.Option("--occurred-as-of", help="Business time: events that occurred by then (ISO 8601)."),
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Hydrate a stream through its registered aggregate and print the state as JSON.

    The bounds combine: --as-of with --occurred-as-of is what was true then, as known at --as-of.
    """
    recorded_at = parse_moment(as_of, "--as-of")
    occurred_at = parse_moment(occurred_as_of, "--occurred-as-of")
    with opened_store(store_url) as store:
        aggregate, hydrated = aggregates.hydrate_stream(
            store, stream, version=version, recorded_at=recorded_at, occurred_at=occurred_at
        )
    out.print_json(
        compact(
            {
                "stream": stream,
                "aggregate": type(aggregate).__name__,
                "version": aggregate.version,
                "state": hydrated,
            }
        )
    )


@demo_app.command("cart")
def demo_cart(store_url: Annotated[str | None, demo_store_option("cart")] = None) -> None:
    """The shopping cart: events, hydration, time travel, a price change, and the race made safe."""
    with opened_store(store_url or demo_store_url("cart"), create=True) as store:
        run_cart_demo(store, Console(highlight=False))


@demo_app.command("bank")
def demo_bank(store_url: Annotated[str | None, demo_store_option("bank")] = None) -> None:
    """The bank: transfers, a compensation, five years of time travel, a back-dated correction."""
    with reported_errors():
        run_bank_demo(store_url, Console(highlight=False))


@demo_app.command("video")
def demo_video(
    store_url: Annotated[str | None, demo_store_option("video")] = None,
    workers: Annotated[int, typer.Option("--workers", min=2, help="Worker processes to start.")] = 3,
) -> None:
    """The video pipeline: real transcodes by worker processes, a paused worker fenced, timelines."""
    with reported_errors():
        run_video_demo(store_url, Console(highlight=False), workers=workers)


# Commands of the outer layers, after the core ones so that --help lists those first.
app.command("trace", rich_help_panel=AUDIT)(trace_command)
app.command("verify", rich_help_panel=AUDIT)(verify_command)
app.command("seal", rich_help_panel=AUDIT)(seal_command)
app.command("keygen", rich_help_panel=AUDIT)(keygen_command)
app.command("reconcile", rich_help_panel=AUDIT)(reconcile_command)
app.add_typer(projections_app, name="projections", rich_help_panel=AUDIT)
app.command("worker", rich_help_panel=WORKERS)(worker)
app.add_typer(groups_app, name="groups", rich_help_panel=WORKERS)
app.command("serve", rich_help_panel=SERVER)(serve)
app.add_typer(keys_app, name="keys", rich_help_panel=SERVER)
app.add_typer(demo_app, name="demo", rich_help_panel=EXAMPLES)
app.add_typer(video_app, name="video", rich_help_panel=EXAMPLES)


def main() -> None:
    app()
