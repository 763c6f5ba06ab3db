"""Projection tests run on both SQL stores: real SQLite files and fresh PostgreSQL schemas.

`sql_store` comes from the repo's `store_factory`, so a module using it must carry
`pytestmark = pytest.mark.sql_stores` (the memory store has no SQL tables to project into).
"""

from __future__ import annotations

import pytest

from chronik import NewEvent
from chronik.clock import ManualClock
from chronik.events.envelope import RecordedEvent
from chronik.projections import Projection, ProjectionTx, handles
from chronik.store import EventStore
from tests.conftest import StoreFactory


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
def sql_store(store_factory: StoreFactory, clock: ManualClock) -> EventStore:
    """A fresh SQL store (SQLite file or PostgreSQL schema) on the test's manual clock."""
    return store_factory(clock=clock)
