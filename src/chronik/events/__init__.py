"""The event envelope and its serialization: the innermost layer, imported by all others."""

from chronik.events.envelope import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
    category_of,
    parse_expected_version,
)

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "StreamState",
    "category_of",
    "parse_expected_version",
]
