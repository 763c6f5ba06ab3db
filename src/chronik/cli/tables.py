"""The tables the CLI prints events in, shared by the commands and the demos."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from chronik.events.envelope import RecordedEvent

TIME_HEADER = "recorded at (UTC)"
PIPED_WIDTH = 200  # columns for output that goes to a file or a pipe: whole rows for grep and less


def stdout_console() -> Console:
    """The console commands print their results on.

    On a terminal, its width. Piped or redirected, Rich would assume 80 columns and fold every
    table cell; the rows are wider than that, so use `PIPED_WIDTH` unless `COLUMNS` says otherwise.
    """
    console = Console(soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def table_time(moment: datetime) -> str:
    """A recorded time as the tables show it: UTC (the header says so), to the millisecond."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def events_table(events: list[RecordedEvent], *, title: str, with_time: bool = True) -> Table:
    table = Table(title=title, title_justify="left")
    columns = ["pos", "stream", "version", "type", "actor", TIME_HEADER, "data"]
    if not with_time:
        columns.remove(TIME_HEADER)
    for column in columns:
        # Everything but the data stays whole on a narrow terminal: the data column folds instead.
        table.add_column(column, overflow="fold", no_wrap=column in ("pos", "version", TIME_HEADER))
    for event in events:
        row = [
            str(event.global_position),
            event.stream,
            str(event.stream_version),
            event.type,
            event.actor or "",
        ]
        if with_time:
            row.append(table_time(event.recorded_at))
        table.add_row(*row, event.json_data)
    return table


def history_table(stream: str, events: list[RecordedEvent]) -> Table:
    """The audit view: when, what, who, and because of which earlier event."""
    table = Table(title=f"history of {stream}", title_justify="left")
    # The time, version and type stay whole on a narrow terminal: the data column folds instead.
    for column in (TIME_HEADER, "version", "type"):
        table.add_column(column, no_wrap=True)
    for column in ("actor", "causation", "data"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(
            table_time(event.recorded_at),
            str(event.stream_version),
            event.type,
            event.actor or "",
            event.causation_id or "",
            event.json_data,
        )
    return table


def print_events(
    console: Console, events: list[RecordedEvent], *, title: str, with_time: bool = True
) -> None:
    console.print(events_table(events, title=title, with_time=with_time))
    if not events:
        console.print("(no events)")
