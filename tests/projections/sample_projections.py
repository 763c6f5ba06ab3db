"""A projection module a user would pass to the CLI with `--module` (imported by a subprocess test)."""

from __future__ import annotations

import os

from chronik.events.envelope import RecordedEvent
from chronik.projections import Projection, ProjectionTx, handles, register_projection


@register_projection
class EventTypeCounts(Projection):
    name = "event_type_counts"
    tables = ("types",)
    schema = ("CREATE TABLE {types} (type TEXT PRIMARY KEY, events INTEGER NOT NULL)",)

    @handles("ItemAdded", "CheckedOut")
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        tx.execute(
            "INSERT INTO {types} VALUES (?, 1) ON CONFLICT (type) DO UPDATE SET events = {types}.events + 1",
            (event.type,),
        )


BREAK_CHECKOUTS = "CHRONIK_TEST_BREAK_CHECKOUTS"


@register_projection
class CheckoutLedger(Projection):
    """One row per event; with $CHRONIK_TEST_BREAK_CHECKOUTS set, a checkout's row gets a NULL its
    NOT NULL column refuses: a handler failing in the database, in a real CLI process."""

    name = "checkout_ledger"
    tables = ("entries",)
    schema = ("CREATE TABLE {entries} (position BIGINT PRIMARY KEY, cart TEXT NOT NULL)",)

    @handles("ItemAdded", "CheckedOut")
    def entry(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        broken = event.type == "CheckedOut" and os.environ.get(BREAK_CHECKOUTS)
        tx.execute(
            "INSERT INTO {entries} VALUES (?, ?)", (event.global_position, None if broken else event.stream)
        )
