"""The API's request and response bodies, as pydantic models: they are the OpenAPI schema.

Bounds are part of the contract: integers stay at or below 2**53 - 1 (an out-of-range number must
be a 422, not a crash; and it is the largest integer every JSON reader, JavaScript's included, reads
exactly, so the schema's bound means the same to the client as to the server), lists and pages are
capped. The store's own rules (stream names, event types, no NUL in metadata) are stated here as
patterns, so a request the schema admits is a request the store takes.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from fastapi import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
)

from chronik.events.envelope import (
    ANY,
    EARLIEST_DATE,
    EVENT_TYPE_PATTERN,
    LATEST_DATE,
    MAX_NAME_LENGTH,
    NO_STREAM,
    STREAM_EXISTS,
    STREAM_NAME_PATTERN,
    TIME_PATTERN,
    ExpectedVersion,
    NewEvent,
    check_time,
    holds_nul,
)

MAX_INT: Final = 2**53 - 1
MAX_PAGE: Final = 1000
MAX_BATCH: Final = 1000


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):  # pydantic would read true as 1; JSON Schema's integer is no boolean
        raise ValueError("must be an integer, not true or false")
    return value


NOT_A_BOOL: Final = BeforeValidator(_not_a_bool)
"""Last in an integer's `Annotated` (after its `Field` bounds, which then stay in the schema): a
body's integer is what JSON Schema's `integer` admits, 2 and 2.0 but never true."""

StreamName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=STREAM_NAME_PATTERN)]
EventType = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=EVENT_TYPE_PATTERN)]

# Text that ends up in an event's metadata (PostgreSQL cannot keep U+0000 in JSON text there, so the
# store refuses it on every backend) or is shown as a label.
NO_NUL: Final = r"^[^\x00]*$"
PlainText = Annotated[str, Field(pattern=NO_NUL)]
JSON_WITHOUT_NUL: Final = "JsonWithoutNul"
"""The name of the schema of any JSON value with no U+0000 in a string or key: recursive, so it is
a component of the API's schema (`server/openapi.py` adds it) that `Metadata`'s schema refers to
(pydantic's own schema of a model with metadata, outside FastAPI, cannot resolve it)."""


def _metadata_in(value: dict[str, Any]) -> dict[str, Any]:
    if holds_nul(value):
        raise ValueError("metadata must not contain the NUL character (U+0000), in a key or a string")
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_metadata_in),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": f"#/components/schemas/{JSON_WITHOUT_NUL}"},
            "description": "Any JSON object without U+0000 in it (the store's rule for metadata).",
        }
    ),
]

# An example's entity id in a URL or a body (a cart, an account, a video): it becomes part of a stream
# name, so it is short and plain.
EntityId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")]

# RFC 3339's date-time (`T` or `t`, `Z` or `z`), and also without an offset (then UTC). Nothing else
# (pydantic's own datetime also takes Unix timestamps and dates alone): the schema says date-time.
_DATE_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _time_in(value: object, info: ValidationInfo) -> datetime:
    """A time from a request: RFC 3339 text on a date `check_time` takes, made timezone-aware."""
    field = info.field_name or "time"
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and _DATE_TIME.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.upper())
        except ValueError as error:
            raise ValueError(f"{field} {value!r} is not a valid time: {error}") from None
    else:
        raise ValueError(f"{field} must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z")
    return check_time(moment, field)


Time = Annotated[
    datetime,
    PlainValidator(_time_in),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": TIME_PATTERN,
            "description": f"RFC 3339 (without an offset: UTC), on a date from {EARLIEST_DATE} to "
            f"{LATEST_DATE}: the calendar's first and last day are refused, so any offset converts to UTC",
        }
    ),
]
"""A time in a request body or parameter: the one way the API reads times (see `check_time`)."""

ExpectedVersionIn = (
    Annotated[int, Field(ge=0, le=MAX_INT), NOT_A_BOOL] | Literal["any", "no_stream", "stream_exists"]
)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EventType = Field(examples=["ItemAdded"])
    data: dict[str, Any] = Field(default_factory=dict, examples=[{"sku": "tea", "quantity": 2}])
    metadata: Metadata | None = Field(default=None, examples=[{"actor": "alice"}])
    event_id: uuid.UUID | None = Field(
        default=None, description="Give one to make a retried append idempotent."
    )
    schema_version: Annotated[int, Field(ge=1, le=1_000_000), NOT_A_BOOL] = 1
    occurred_at: Time | None = Field(default=None, description="Business time; default: when recorded.")

    def to_new_event(self) -> NewEvent:
        return NewEvent(
            type=self.type,
            data=self.data,
            metadata=self.metadata,
            event_id=self.event_id,
            schema_version=self.schema_version,
            occurred_at=self.occurred_at,
        )


class AppendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(max_length=MAX_BATCH)
    expected_version: ExpectedVersionIn | None = Field(
        default=None,
        description="any, no_stream, stream_exists or the stream's current version; "
        "also accepted as an If-Match header (a version, or * for stream_exists) or If-None-Match: *",
    )


class StreamAppendIn(AppendIn):
    stream: StreamName


class MultiAppendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    appends: list[StreamAppendIn] = Field(min_length=1, max_length=100)


class AppendOut(BaseModel):
    stream: str
    stream_version: int | None
    global_positions: list[int]
    already_recorded: bool


class MultiAppendOut(BaseModel):
    results: list[AppendOut]


class EventOut(BaseModel):
    event_id: str
    stream: str
    stream_version: int
    global_position: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    schema_version: int
    recorded_at: str
    occurred_at: str


class StreamPage(BaseModel):
    stream: str
    version: int = Field(description="The stream's current version (its last event's).")
    events: list[EventOut]


class LogPage(BaseModel):
    head_position: int
    events: list[EventOut]
    next_from_position: int = Field(description="Pass as from_position to read the next page.")


class StreamSummary(BaseModel):
    stream: str
    category: str
    version: int
    event_count: int
    first_recorded_at: str
    last_recorded_at: str


class StreamList(BaseModel):
    streams: list[StreamSummary]


class StateOut(BaseModel):
    stream: str
    aggregate: str
    version: int
    state: dict[str, Any]


_encode = msgspec.json.Encoder().encode


def json_response(body: Any, headers: dict[str, str] | None = None) -> Response:
    """Encode with msgspec and skip FastAPI's response validation.

    For the hot read paths: the body is built from `RecordedEvent.to_dict()`, which already has
    the documented shape, and validating a page of events through pydantic models cost more than
    reading it from SQLite. The route still declares its `response_model` for the schema.
    """
    return Response(_encode(body), media_type="application/json", headers=headers)


def expected_from(value: ExpectedVersionIn | None) -> ExpectedVersion | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return {"any": ANY, "no_stream": NO_STREAM, "stream_exists": STREAM_EXISTS}[value]
