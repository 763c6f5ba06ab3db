"""CLI commands: `projections rebuild|status|run|drop-scratch`, `reconcile`; the audit ones are in `audit.py`.

Mounted by the main app (`chronik.cli.app`); `python -m chronik.cli.projections` runs them alone.
Exit codes (the audit commands share them): 0 all is well; 1 the answer is "no" (rows differ);
2 the command could not run (a user mistake or an unreachable store), always
with one line saying why, never a traceback.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from chronik.cli.help import CliApp
from chronik.cli.stores import StoreOption, fail, missing_sqlite_file
from chronik.errors import ChronikError, InvalidInput
from chronik.events.envelope import parse_time
from chronik.projections import (
    Projection,
    ProjectionNotBuilt,
    ProjectionRunner,
    build_as_of,
    dialect_for,
    drop_scratch_label,
    projection_named,
    rebuild,
    registered_projections,
    scratch_labels,
)
from chronik.projections import (
    reconcile as reconcile_projection,
)
from chronik.projections.errors import describe_cause
from chronik.projections.projection import live_slot, table_names
from chronik.store import EventStore, default_store_url, open_store

BUILTIN_MODULES: Final = ("chronik.examples.cart.projections",)
MODULES_VARIABLE: Final = "CHRONIK_PROJECTION_MODULES"

projections_app = CliApp(help="Read models: rebuild without downtime, status and lag.", no_args_is_help=True)

ModuleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--module",
        "-m",
        help=f"Import this module to register projections (repeatable; also ${MODULES_VARIABLE}).",
    ),
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Events per transaction.")]


# -- shared plumbing ---------------------------------------------------------------------------


def _out() -> Console:
    """Results go to stdout, unwrapped (they are read by scripts too); progress goes to stderr."""
    return Console(soft_wrap=True, highlight=False)


@contextmanager
def _store(url: str | None) -> Iterator[EventStore]:
    """Open the store, refusing to create an empty SQLite file for a mistyped path."""
    url = url or default_store_url()
    if (path := missing_sqlite_file(url)) is not None:
        fail(f"no store at {path!r} (from {url}); pass --store or set CHRONIK_STORE")
    try:
        store = open_store(url)
    except ChronikError as error:
        fail(str(error))
    try:
        yield store
    except ChronikError as error:  # refused, not found, or a handler failed on the data
        fail(str(error))
    finally:
        store.close()


def _load_modules(modules: list[str] | None) -> None:
    names = [*BUILTIN_MODULES, *(modules or [])]
    names += [name.strip() for name in os.environ.get(MODULES_VARIABLE, "").split(",") if name.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            if name in BUILTIN_MODULES:
                continue  # the example is optional
            fail(f"cannot import projection module {name!r}: {error}", code=2)
        except Exception as error:  # the module itself fails (a bad declaration, a bug at import)
            fail(f"cannot import projection module {name!r}: {describe_cause(error)}", code=2)


def _projection(store: EventStore, name: str, modules: list[str] | None) -> Projection:
    _load_modules(modules)
    try:
        return projection_named(name)(store)
    except ChronikError as error:
        fail(str(error))


def _run_rate(task: Task) -> float | None:
    """Events per second in this run: events done since the bar's first report over the time since.

    A resumed rebuild starts with the events done before the interruption already counted (the
    bar shows 8600/29999); counting them as this run's work gave absurd rates (24 million ev/s) and
    ETAs, so the first report's count is kept (`run_start`) and left out.
    """
    elapsed = task.finished_time if task.finished_time is not None else task.elapsed
    done = task.completed - int(task.fields.get("run_start", 0))
    if not elapsed or done <= 0:
        return None
    return done / elapsed


class RateColumn(ProgressColumn):
    """Events per second in this run (see `_run_rate`)."""

    def render(self, task: Task) -> Text:
        rate = _run_rate(task)
        return Text("" if rate is None else f"{rate:,.0f} ev/s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at this run's rate: shown from the first batch on (rich's own estimate waits for
    several updates, so a rebuild of a few batches never showed one)."""

    def render(self, task: Task) -> Text:
        if task.finished or (task.total is not None and task.completed >= task.total):
            return Text("eta 0:00:00", style="progress.remaining")
        rate = _run_rate(task)
        if rate is None or task.total is None:
            return Text("eta -:--:--", style="progress.remaining")
        seconds = math.ceil((task.total - task.completed) / rate)
        return Text(f"eta {timedelta(seconds=seconds)}", style="progress.remaining")


class _Bar:
    """The `progress(done, total)` callback of a rich bar; `line()` is what the bar shows now."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self._bar = bar
        self._task = task
        self._started = False

    def __call__(self, done: int, total: int) -> None:
        if not self._started:
            # The first report, before any batch: the clock starts here, and `done` (a resumed
            # rebuild's earlier work) is kept out of the rate and the ETA.
            self._started = True
            self._bar.reset(self._task, completed=done, total=total, run_start=done)
            return
        self._bar.update(self._task, completed=done, total=total)

    def line(self) -> str:
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(self._bar.make_tasks_table([self._bar.tasks[self._task]]))
        return console.export_text().strip()


@contextmanager
def _progress(description: str, console: Console | None = None) -> Iterator[_Bar]:
    """A rich progress bar over events (done of total), with rate and ETA; yields the `progress` callback.

    The callers count events, not log positions (sparse on PostgreSQL). Nothing to do shows 0/0.
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        EtaColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as bar:
        yield _Bar(bar, bar.add_task(description, total=None))


def _parse_as_of(text: str) -> tuple[int | None, datetime | None]:
    cleaned = text.strip()
    if cleaned.isdigit():
        return int(cleaned), None
    try:
        datetime.fromisoformat(cleaned)
    except ValueError:
        fail(f"--as-of {text!r} is neither a log position nor an ISO 8601 time (2026-01-31T12:00Z)", code=2)
    try:
        return None, parse_time(cleaned, "--as-of")
    except InvalidInput as error:  # a time, but on a date chronik does not take
        fail(str(error), code=2)


# -- projections rebuild | status ---------------------------------------------------------------


@projections_app.command("rebuild")
def rebuild_command(
    name: Annotated[str, typer.Argument(help="The projection's registered name.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Build a scratch copy as of a log position (a number) or a time (ISO 8601, UTC if no "
            "offset), leaving the live tables alone.",
        ),
    ] = None,
    batch_size: BatchOption = 1000,
    store_url: StoreOption = None,
    modules: ModuleOption = None,
) -> None:
    """Rebuild NAME into a new table version while the live one serves, then swap it in."""
    with _store(store_url) as store:
        projection = _projection(store, name, modules)
        console = _out()
        if as_of is not None:
            position, moment = _parse_as_of(as_of)
            with _progress(f"{name} as of {as_of}") as progress:
                view = build_as_of(
                    projection, position=position, at=moment, batch_size=batch_size, progress=progress
                )
            tables = ", ".join(view.tables.values())
            label = view.slot.removeprefix("scratch_")
            if position is not None and view.position < position:  # accepted, and said so
                as_of = f"{as_of}, past the log's head: built up to the head"
            console.print(
                f"built {name} as of {as_of} (log position {view.position}) into: {tables}\n"
                f"query them there; drop them with: chronik projections drop-scratch {name} {label}"
            )
            return
        with _progress(f"rebuild {name}") as progress:
            result = rebuild(projection, batch_size=batch_size, progress=progress)
        resumed = " (resumed)" if result.resumed else ""
        console.print(
            f"{name}: version {result.new_version} is live at position {result.position}{resumed}; "
            f"{result.events_applied} events applied; version {result.old_version} dropped"
        )


@projections_app.command("status")
def status_command(store_url: StoreOption = None, modules: ModuleOption = None) -> None:
    """Each projection's live version, position and lag (events behind the log)."""
    with _store(store_url) as store:
        _load_modules(modules)
        dialect = dialect_for(store)
        with dialect.read_snapshot(store) as connection:
            rows = {row.name: row for row in dialect.registry_rows(connection)}
            head = dialect.head_position(connection)
            # Lag in events after the checkpoint (positions are sparse on PostgreSQL).
            lag = {name: dialect.count_events(connection, row.position, head) for name, row in rows.items()}
            present = {name: set(dialect.tables_with_prefix(connection, f"{name}__")) for name in rows}
        code = registered_projections()
        scratch = {name: scratch_labels(cls(store)) for name, cls in code.items() if name in rows}
        table = Table(title=f"projections (log head {head})")
        for column in ("name", "live tables", "built by", "code", "position", "lag", "rebuilding", "scratch"):
            table.add_column(column, justify="right" if column in ("position", "lag") else "left")
        for name in sorted(rows.keys() | code.keys()):
            row, cls = rows.get(name), code.get(name)
            code_text = "-" if cls is None else f"v{cls.version}"
            if row is None:
                table.add_row(name, "not built", "-", code_text, "-", "-", "", "")
                continue
            if cls is not None and cls.version != row.code_version:
                code_text += " [yellow](changed: rebuild)[/]"
            building = (
                "" if row.building_version is None else f"v{row.building_version} at {row.building_position}"
            )
            live = f"v{row.live_version}"
            missing = _missing_live_tables(row.live_version, cls, present[name])
            if missing:
                live += f" [red](missing: {', '.join(missing)}; rebuild)[/]"
            table.add_row(
                name,
                live,
                f"code v{row.code_version}",
                code_text,
                str(row.position),
                str(lag[name]),
                building,
                ", ".join(scratch.get(name, [])),
            )
        Console(width=160).print(table)


def _missing_live_tables(live_version: int, cls: type[Projection] | None, present: set[str]) -> list[str]:
    """The live set's tables that are not in the database (dropped by hand): a cheap catalog check,
    so `status` shows what `reconcile` would report. Without the code, any table of the set will do."""
    slot = live_slot(live_version)
    if cls is None:
        return [] if any(table.endswith(f"__{slot}") for table in present) else ["all"]
    return [
        table
        for table, physical in table_names(cls.name, cls.tables, slot).items()
        if physical not in present
    ]


@projections_app.command("run")
def run_command(
    names: Annotated[list[str] | None, typer.Argument(help="Projections to run (or --all).")] = None,
    run_all: Annotated[
        bool, typer.Option("--all", help="Run every registered projection (the bundled examples' too).")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Catch up to the current head, then exit (for cron and scripts).")
    ] = False,
    rebuild_stale: Annotated[
        bool, typer.Option("--rebuild-stale", help="Rebuild projections whose code version changed.")
    ] = False,
    batch_size: BatchOption = 500,
    store_url: StoreOption = None,
    modules: ModuleOption = None,
) -> None:
    """Keep async projections current (until Ctrl-C, or with --once until caught up).

    Names are required (or `--all`): running every registered projection would build the bundled
    examples' tables in whatever store the command was pointed at.
    """
    with _store(store_url) as store:
        _load_modules(modules)
        if names and run_all:
            fail("pass projection names or --all, not both", code=2)
        if not names and not run_all:
            known = ", ".join(registered_projections()) or "none are registered"
            fail(f"name the projections to run (registered: {known}), or pass --all to run every one", code=2)
        chosen = names or list(registered_projections())
        projections = [_projection(store, name, modules) for name in chosen]
        runner = ProjectionRunner(store, projections, batch_size=batch_size, rebuild_stale=rebuild_stale)
        if once:
            runner.run_until_caught_up(timeout=24 * 3600)
            positions = ", ".join(f"{p.name} at {p.position()}" for p in projections)
            _out().print(f"caught up: {positions}")
            return
        _out().print(f"running {', '.join(chosen)} on {store.url}; Ctrl-C stops")
        runner.start()
        try:
            while True:
                time.sleep(1.0)
                if runner.last_error is not None:
                    Console(stderr=True, soft_wrap=True).print(
                        f"[yellow]last error:[/] {escape(str(runner.last_error))}", highlight=False
                    )
                    runner.last_error = None
        except KeyboardInterrupt:
            pass
        finally:
            runner.stop()


@projections_app.command("drop-scratch")
def drop_scratch_command(
    name: Annotated[str, typer.Argument(help="The projection's registered name.")],
    label: Annotated[str | None, typer.Argument(help="One scratch set (default: all of them).")] = None,
    store_url: StoreOption = None,
    modules: ModuleOption = None,
) -> None:
    """Drop NAME's scratch table sets left by `rebuild --as-of` (the live tables are not touched)."""
    with _store(store_url) as store:
        projection = _projection(store, name, modules)
        labels = scratch_labels(projection)
        if label is not None:
            if label not in labels:
                fail(f"{name} has no scratch set {label!r} (it has: {', '.join(labels) or 'none'})")
            labels = [label]
        for each in labels:
            drop_scratch_label(projection, each)
        _out().print(f"dropped {len(labels)} scratch set(s) of {name}: {', '.join(labels) or '-'}")


# -- reconcile, trace, verify, seal -------------------------------------------------------------


def reconcile_command(
    name: Annotated[str, typer.Argument(help="The projection's registered name.")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many rows.")] = 50,
    batch_size: BatchOption = 1000,
    store_url: StoreOption = None,
    modules: ModuleOption = None,
) -> None:
    """Rebuild NAME from the log into scratch tables and compare with the live ones; exit 1 if rows differ."""
    with _store(store_url) as store:
        projection = _projection(store, name, modules)
        if projection.registry_row() is None:  # checked before the progress bar starts
            fail(str(ProjectionNotBuilt(name)))
        try:
            with _progress(f"reconcile {name}") as progress:
                report = reconcile_projection(projection, batch_size=batch_size, progress=progress)
        except ProjectionNotBuilt as error:
            fail(str(error))
        console = _out()
        if report.ok:
            console.print(
                f"{name}: live tables (v{report.live_version}) match the log up to {report.position}"
            )
            return
        console.print(
            f"[bold red]{name}: {len(report.differences)} difference(s)[/] between the live tables "
            f"(v{report.live_version}) and a rebuild from the log up to position {report.position}:",
            highlight=False,
        )
        for difference in report.differences[:limit]:
            console.print(f"  {difference.describe()}", highlight=False, markup=False)
        if len(report.differences) > limit:
            console.print(f"  ... and {len(report.differences) - limit} more")
        raise typer.Exit(1)


# The names the main app mounts (see the module docstring of chronik.cli.app).
reconcile = reconcile_command


def standalone_app() -> typer.Typer:
    """This module's commands and the audit ones (`chronik.cli.audit`, which shares this module's
    plumbing) on one app: for `python -m chronik.cli.projections` and tests."""
    from chronik.cli.audit import keygen_command, seal_command, trace_command, verify_command

    app = CliApp(no_args_is_help=True, help="chronik projections and audit")
    app.add_typer(projections_app, name="projections")
    app.command("reconcile")(reconcile_command)
    app.command("trace")(trace_command)
    app.command("verify")(verify_command)
    app.command("seal")(seal_command)
    app.command("keygen")(keygen_command)
    return app


if __name__ == "__main__":
    standalone_app()()
