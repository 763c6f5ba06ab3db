"""The API's request and response bodies, as pydantic models: they are the OpenAPI schema.

Bounds are part of the contract: integers stay below 2**62 (SQLite's INTEGER is 64-bit, and an
out-of-range number must be a 422, not a crash), lists and pages are capped.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, WithJsonSchema

from chronik.events.envelope import (
    ANY,
    EARLIEST_DATE,
    LATEST_DATE,
    NO_STREAM,
    STREAM_EXISTS,
    TIME_PATTERN,
    ExpectedVersion,
    NewEvent,
    check_time,
)

MAX_INT: Final = 2**62
MAX_PAGE: Final = 1000
MAX_BATCH: Final = 1000

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

ExpectedVersionIn = Annotated[int, Field(ge=0, le=MAX_INT)] | Literal["any", "no_stream", "stream_exists"]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=255, examples=["ItemAdded"])
    data: dict[str, Any] = Field(default_factory=dict, examples=[{"sku": "tea", "quantity": 2}])
    metadata: dict[str, Any] | None = Field(default=None, examples=[{"actor": "alice"}])
    event_id: uuid.UUID | None = Field(
        default=None, description="Give one to make a retried append idempotent."
    )
    schema_version: int = Field(default=1, ge=1, le=1_000_000)
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
    stream: str = Field(min_length=1, max_length=255)


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
