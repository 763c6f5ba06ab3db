"""Streams: list, read (with time travel), append (one stream or several atomically), hydrated state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, Response

from chronik.domain import aggregates
from chronik.errors import ChronikError, InvalidExpectedVersion, WrongExpectedVersion
from chronik.events.envelope import ANY, NO_STREAM, STREAM_EXISTS, ExpectedVersion, parse_expected_version
from chronik.server.context import AppendKey, ReadKey, ServerState, StateDep, check_stream_access
from chronik.server.models import (
    MAX_INT,
    MAX_PAGE,
    AppendIn,
    AppendOut,
    MultiAppendIn,
    MultiAppendOut,
    StateOut,
    StreamList,
    StreamPage,
    StreamSummary,
    Time,
    expected_from,
    json_response,
)
from chronik.server.problems import Problem
from chronik.store import AppendRequest, AppendResult

router = APIRouter(prefix="/api", tags=["streams"])

Version = Annotated[int | None, Query(ge=0, le=MAX_INT)]
T = TypeVar("T")


def timed_append(state: ServerState, work: Callable[[], T], events: int) -> T:
    """Run an append, counting it by outcome and timing the store's part."""
    started = time.perf_counter()
    try:
        result = work()
    except WrongExpectedVersion:
        state.metrics.appends.inc("conflict")
        raise
    except ChronikError:
        state.metrics.appends.inc("rejected")
        raise
    state.metrics.append_duration.observe(time.perf_counter() - started)
    state.metrics.appends.inc("ok")
    state.metrics.appended_events.inc(amount=events)
    return result


def _out(result: AppendResult) -> AppendOut:
    return AppendOut(
        stream=result.stream,
        stream_version=result.stream_version,
        global_positions=list(result.global_positions),
        already_recorded=result.already_recorded,
    )


def header_expectation(if_match: str | None, if_none_match: str | None) -> ExpectedVersion | None:
    """`If-Match: "5"` (or 5) expects version 5, `If-Match: *` an existing stream, `If-None-Match: *` none."""
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise Problem(400, "Invalid input", "If-None-Match accepts only * (the stream must not exist)")
        if if_match is not None:
            raise Problem(400, "Invalid input", "send If-Match or If-None-Match, not both")
        return NO_STREAM
    if if_match is None:
        return None
    cleaned = if_match.strip().removeprefix("W/").strip('"')
    if cleaned == "*":
        return STREAM_EXISTS
    try:
        return parse_expected_version(cleaned)
    except InvalidExpectedVersion:
        raise Problem(400, "Invalid input", f"If-Match {if_match!r} is not a stream version") from None


@router.get("/streams", response_model=StreamList, summary="List streams")
def list_streams(
    state: StateDep,
    key: ReadKey,
    prefix: Annotated[
        str, Query(max_length=255, description="Only streams whose name starts with this.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> StreamList:
    """Streams whose name starts with `prefix` (the console's search box), with versions and times."""
    found = state.store.list_streams(prefix=prefix, limit=limit)
    return StreamList(
        streams=[
            StreamSummary(
                stream=info.stream,
                category=info.category,
                version=info.version,
                event_count=info.event_count,
                first_recorded_at=info.first_recorded_at.isoformat(),
                last_recorded_at=info.last_recorded_at.isoformat(),
            )
            for info in found
            if key.allows_stream(info.stream)
        ]
    )


@router.get("/streams/{stream:path}/events", response_model=StreamPage, summary="Read a stream")
def read_stream(
    stream: str,
    state: StateDep,
    key: ReadKey,
    from_version: Version = None,
    to_version: Version = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    backwards: bool = False,
    as_of: Annotated[Time | None, Query(description="What the store knew at this time (recorded).")] = None,
    occurred_as_of: Annotated[Time | None, Query(description="Events that occurred by then.")] = None,
) -> Response:
    """A stream's events in version order (or newest first), optionally as of a past moment.

    The `ETag` header carries the stream's current version: send it back as `If-Match` to append.
    """
    check_stream_access(key, stream)
    events = state.store.read_stream(
        stream,
        from_version=from_version,
        to_version=to_version,
        backwards=backwards,
        limit=limit,
        recorded_until=as_of,
        occurred_until=occurred_as_of,
    )
    version = state.store.stream_version(stream)
    state.metrics.reads.inc("stream")
    state.metrics.read_events.inc("stream", amount=len(events))
    body = {
        "stream": stream,
        "version": -1 if version is None else version,
        "events": [e.to_dict() for e in events],
    }
    return json_response(body, headers={"ETag": f'"{version}"'})


@router.post("/streams/{stream:path}/events", response_model=AppendOut, summary="Append to a stream")
def append(
    stream: str,
    body: AppendIn,
    state: StateDep,
    key: AppendKey,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=64)] = None,
    if_none_match: Annotated[str | None, Header(max_length=64)] = None,
) -> AppendOut:
    """Append events to one stream, all or nothing, if it is at the expected version.

    A mismatch is a 409 naming the expected and actual versions; resending the same event ids is
    acknowledged (`already_recorded`) without writing them twice.
    """
    check_stream_access(key, stream)
    from_body = expected_from(body.expected_version)
    from_header = header_expectation(if_match, if_none_match)
    if from_body is not None and from_header is not None and from_body != from_header:
        raise Problem(400, "Invalid input", "the body's expected_version and the If-Match header disagree")
    expected = from_body if from_body is not None else from_header if from_header is not None else ANY
    events = [event.to_new_event() for event in body.events]
    result = timed_append(state, lambda: state.store.append(stream, events, expected), len(events))
    response.headers["ETag"] = f'"{result.stream_version}"'
    return _out(result)


@router.post("/append", response_model=MultiAppendOut, summary="Append to several streams atomically")
def append_many(body: MultiAppendIn, state: StateDep, key: AppendKey) -> MultiAppendOut:
    """Every stream's batch commits, or none does; each stream has its own expected version."""
    requests = []
    for item in body.appends:
        check_stream_access(key, item.stream)
        expected = expected_from(item.expected_version)
        requests.append(
            AppendRequest(
                item.stream,
                [event.to_new_event() for event in item.events],
                ANY if expected is None else expected,
            )
        )
    count = sum(len(item.events) for item in body.appends)
    results = timed_append(state, lambda: state.store.append_many(requests), count)
    return MultiAppendOut(results=[_out(result) for result in results])


@router.get("/streams/{stream:path}/state", response_model=StateOut, summary="Hydrated state of a stream")
def stream_state(
    stream: str,
    state: StateDep,
    key: ReadKey,
    version: Version = None,
    as_of: Annotated[Time | None, Query(description="What the store knew at this time.")] = None,
    occurred_as_of: Annotated[Time | None, Query(description="Business time.")] = None,
) -> StateOut:
    """The stream's aggregate (found by its category), now or as of a version, a recorded or business time."""
    check_stream_access(key, stream)
    if sum(value is not None for value in (version, as_of, occurred_as_of)) > 1:
        raise Problem(400, "Invalid input", "choose one of version, as_of, occurred_as_of")
    aggregate, hydrated = aggregates.hydrate_stream(
        state.store, stream, version=version, recorded_at=as_of, occurred_at=occurred_as_of
    )
    state.metrics.reads.inc("state")
    return StateOut(
        stream=stream,
        aggregate=type(aggregate).__name__,
        version=-1 if aggregate.version is None else aggregate.version,
        state=hydrated,
    )
