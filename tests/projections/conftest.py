"""Projection tests run on real SQLite files (projections need a SQL store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chronik import NewEvent
from chronik.clock import ManualClock
from chronik.events.envelope import RecordedEvent
from chronik.projections import Projection, ProjectionTx, handles
from chronik.store import EventStore, open_store


class Counts(Projection):
    """Counts events per stream, and totals the `amount` of `Deposited` events."""

    name = "counts"
    version = 1
    tables = ("streams",)
    schema = (
        "CREATE TABLE {streams} (stream TEXT PRIMARY KEY, events INTEGER NOT NULL, total INTEGER NOT NULL)",
    )

    @handles("Deposited", "Noted")
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        amount = int(event.data.get("amount", 0)) if event.type == "Deposited" else 0
        tx.execute(
            "INSERT INTO {streams} (stream, events, total) VALUES (?, 1, ?) ON CONFLICT (stream) "
            "DO UPDATE SET events = {streams}.events + 1, total = {streams}.total + excluded.total",
            (event.stream, amount),
        )

    def rows(self) -> dict[str, tuple[int, int]]:
        return {row[0]: (row[1], row[2]) for row in self.query("SELECT * FROM {streams} ORDER BY stream")}


def deposit(amount: int) -> NewEvent:
    return NewEvent(type="Deposited", data={"amount": amount})


def append_deposits(store: EventStore, streams: int, per_stream: int, amount: int = 1) -> int:
    last = 0
    for index in range(streams):
        result = store.append(f"acct-{index}", [deposit(amount) for _ in range(per_stream)])
        last = result.last_position or last
    return last


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: ManualClock) -> Iterator[EventStore]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", clock=clock)
    yield store
    store.close()


def table_names(store: EventStore) -> list[str]:
    connection: Any = store.connection()  # type: ignore[attr-defined]
    return [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
