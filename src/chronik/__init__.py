"""chronik: an event-sourcing platform. The append-only log is the system of record.

import chronik

store = chronik.open_store("sqlite:///shop.db")
store.append("cart-42", [chronik.NewEvent(type="ItemAdded", data={"sku": "tea", "qty": 2})],
             expected_version=chronik.NO_STREAM)
for event in store.read_stream("cart-42"):
    print(event.stream_version, event.type, event.data)
"""

from chronik.clock import ManualClock, system_clock
from chronik.errors import (
    ChronikError,
    DuplicateEventId,
    EventDataNotSerializable,
    EventTooLarge,
    InvalidExpectedVersion,
    InvalidInput,
    InvalidStreamName,
    StoreUnavailable,
    StreamNotFound,
    WriteOrderConflict,
    WrongExpectedVersion,
)
from chronik.events import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
)
from chronik.store import AppendRequest, AppendResult, EventStore, open_store

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendRequest",
    "AppendResult",
    "ChronikError",
    "DuplicateEventId",
    "EventDataNotSerializable",
    "EventStore",
    "EventTooLarge",
    "ExpectedVersion",
    "InvalidExpectedVersion",
    "InvalidInput",
    "InvalidStreamName",
    "ManualClock",
    "NewEvent",
    "RecordedEvent",
    "StoreUnavailable",
    "StreamNotFound",
    "StreamState",
    "WriteOrderConflict",
    "WrongExpectedVersion",
    "open_store",
    "system_clock",
]
