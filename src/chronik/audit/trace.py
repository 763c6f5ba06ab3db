"""The audit trail of one business operation: every event sharing a correlation id, across streams."""

from __future__ import annotations

from chronik.events.envelope import RecordedEvent
from chronik.store.contract import EventStore


def trace(store: EventStore, correlation_id: str) -> list[RecordedEvent]:
    """Every event of the operation, in global order (the order they became facts).

    The store gives each append's events the first event's id as correlation id unless the
    writer passed one; handlers that act on an event pass it on (with the event as causation),
    so one id follows a request through every stream it touched.
    """
    return store.read_correlated(correlation_id.strip())
