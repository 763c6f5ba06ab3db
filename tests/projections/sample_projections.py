"""A projection module a user would pass to the CLI with `--module` (imported by a subprocess test)."""

from __future__ import annotations

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
