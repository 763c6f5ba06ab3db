"""The tables the CLI prints events in, shared by the commands and the demos."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from chronik.events.envelope import RecordedEvent


def events_table(events: list[RecordedEvent], *, title: str, with_time: bool = True) -> Table:
    table = Table(title=title, title_justify="left")
    columns = ["pos", "stream", "version", "type", "actor", "recorded at", "data"]
    if not with_time:
        columns.remove("recorded at")
    for column in columns:
        table.add_column(column, overflow="fold")
    for event in events:
        row = [
            str(event.global_position),
            event.stream,
            str(event.stream_version),
            event.type,
            event.actor or "",
        ]
        if with_time:
            row.append(event.recorded_at.isoformat(timespec="milliseconds"))
        table.add_row(*row, event.json_data)
    return table


def history_table(stream: str, events: list[RecordedEvent]) -> Table:
    """The audit view: when, what, who, and because of which earlier event."""
    table = Table(title=f"history of {stream}", title_justify="left")
    for column in ("recorded at", "version", "type", "actor", "causation", "data"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(
            event.recorded_at.isoformat(timespec="milliseconds"),
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
