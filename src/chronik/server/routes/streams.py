"""Streams: list, read (with time travel), append (one stream or several atomically), hydrated state.

Listing, reading and appending are coroutines on the server's asyncio store (`state.aio`): no
thread per request, and the store's calls run on its bounded pool. The hydrated state still
runs on a thread (FastAPI's, for a plain `def`): it drives the synchronous aggregate machinery.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import WithJsonSchema

from chronik.aio import AsyncEventStore
from chronik.domain import aggregates
from chronik.errors import WrongExpectedVersion
from chronik.events.envelope import (
    ANY,
    MAX_NAME_LENGTH,
    NO_STREAM,
    STREAM_EXISTS,
    STREAM_NAME_PATTERN,
    ExpectedVersion,
)
from chronik.server.context import AppendKey, ReadKey, StateDep, check_stream_access
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
from chronik.server.openapi import problems
from chronik.store import AppendRequest, AppendResult

router = APIRouter(prefix="/api", tags=["streams"], responses=problems(503))

Version = Annotated[int | None, Query(ge=0, le=MAX_INT)]
StreamPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_NAME_LENGTH, pattern=STREAM_NAME_PATTERN, description="A stream name."),
]


def _out(result: AppendResult) -> AppendOut:
    return AppendOut(
        stream=result.stream,
        stream_version=result.stream_version,
        global_positions=list(result.global_positions),
        already_recorded=result.already_recorded,
    )


# What If-Match and If-None-Match take (the OpenAPI schema says the same): a version, quoted as
# an ETag (weak or not) or bare, or `*`; If-None-Match only `*`.
IF_MATCH: Final = r'^(?:\*|(?:W/)?"[0-9]{1,15}"|[0-9]{1,15})$'
IF_NONE_MATCH: Final = r"^\*$"


def header_expectation(if_match: str | None, if_none_match: str | None) -> list[ExpectedVersion]:
    """`If-Match: "5"` (or 5) expects version 5, `If-Match: *` an existing stream, `If-None-Match: *` none.

    The headers' patterns (checked by FastAPI, 422 otherwise) leave only these forms.
    """
    stated: list[ExpectedVersion] = [NO_STREAM] if if_none_match is not None else []
    if if_match is not None:
        cleaned = if_match.removeprefix("W/").strip('"')
        stated.append(STREAM_EXISTS if cleaned == "*" else int(cleaned))
    return stated


def _holds(expected: ExpectedVersion, actual: int | None) -> bool:
    if expected is NO_STREAM:
        return actual is None
    if expected is STREAM_EXISTS:
        return actual is not None
    return expected is ANY or expected == actual


async def combined_expectation(
    store: AsyncEventStore, stream: str, stated: list[ExpectedVersion]
) -> ExpectedVersion:
    """One expectation for the append that holds exactly when every stated one does.

    A request may state several (the body's `expected_version`, If-Match, If-None-Match); like
    HTTP's own preconditions, all of them must hold. Two that no stream can meet at once (versions
    3 and 4, a version and no stream) are answered as the conflict they are: a 409 naming one
    that does not hold for the stream as it is, so the client re-reads as after any conflict.
    """
    strict = list(dict.fromkeys(expected for expected in stated if expected is not ANY))
    versions = [expected for expected in strict if isinstance(expected, int)]
    if len(strict) <= 1:
        return strict[0] if strict else ANY
    if len(versions) == 1 and set(strict) <= {versions[0], STREAM_EXISTS}:
        return versions[0]  # a version implies that the stream exists
    actual = await store.stream_version(stream)
    raise WrongExpectedVersion(stream, next(e for e in strict if not _holds(e, actual)), actual)


@router.get("/streams", response_model=StreamList, summary="List streams")
async def list_streams(
    state: StateDep,
    key: ReadKey,
    prefix: Annotated[
        str, Query(max_length=255, description="Only streams whose name starts with this.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> StreamList:
    """Streams whose name starts with `prefix` (the console's search box), with versions and times."""
    found = await state.aio.list_streams(prefix=prefix, limit=limit)
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


@router.get(
    "/streams/{stream:path}/events",
    response_model=StreamPage,
    summary="Read a stream",
    responses=problems((404, "The stream has no events.")),
)
async def read_stream(
    stream: StreamPath,
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
    events = await state.aio.read_stream(
        stream,
        from_version=from_version,
        to_version=to_version,
        backwards=backwards,
        limit=limit,
        recorded_until=as_of,
        occurred_until=occurred_as_of,
    )
    version = await state.aio.stream_version(stream)
    state.metrics.reads.inc("stream")
    state.metrics.read_events.inc("stream", amount=len(events))
    body = {
        "stream": stream,
        "version": -1 if version is None else version,
        "events": [e.to_dict() for e in events],
    }
    return json_response(body, headers={"ETag": f'"{version}"'})


@router.post(
    "/streams/{stream:path}/events",
    response_model=AppendOut,
    summary="Append to a stream",
    responses=problems(
        (
            409,
            "Not at the expected version (`expected`, `actual`), an event id recorded elsewhere, or an "
            "event the aggregate of the stream's category could not apply (`EventDoesNotFit`).",
        ),
    ),
)
async def append(
    stream: StreamPath,
    body: AppendIn,
    state: StateDep,
    key: AppendKey,
    response: Response,
    if_match: Annotated[str | None, Header(pattern=IF_MATCH, description='A version ("5") or *.')] = None,
    if_none_match: Annotated[
        str | None,
        Header(pattern=IF_NONE_MATCH, description="* (the stream must not exist)."),
        WithJsonSchema({"type": "string", "enum": ["*"]}),  # the one value, as the schema's own word
    ] = None,
) -> AppendOut:
    """Append events to one stream, all or nothing, if it is at the expected version.

    A mismatch is a 409 naming the expected and actual versions; resending the same event ids is
    acknowledged (`already_recorded`) without writing them twice.
    """
    check_stream_access(key, stream)
    from_body = expected_from(body.expected_version)
    stated = [*([] if from_body is None else [from_body]), *header_expectation(if_match, if_none_match)]
    events = [event.to_new_event() for event in body.events]
    aggregates.check_events(stream, events)

    expected = await combined_expectation(state.aio, stream, stated)
    result = await state.aio.append(stream, events, expected)
    response.headers["ETag"] = f'"{result.stream_version}"'
    return _out(result)


@router.post(
    "/append",
    response_model=MultiAppendOut,
    summary="Append to several streams atomically",
    responses=problems(
        (
            409,
            "A stream is not at its expected version, an event id is recorded elsewhere, or an event does "
            "not fit the aggregate of its stream's category (`EventDoesNotFit`).",
        )
    ),
)
async def append_many(body: MultiAppendIn, state: StateDep, key: AppendKey) -> MultiAppendOut:
    """Every stream's batch commits, or none does; each stream has its own expected version."""
    requests = []
    for item in body.appends:
        check_stream_access(key, item.stream)
        expected = expected_from(item.expected_version)
        events = [event.to_new_event() for event in item.events]
        aggregates.check_events(item.stream, events)
        requests.append(AppendRequest(item.stream, events, ANY if expected is None else expected))
    results = await state.aio.append_many(requests)
    return MultiAppendOut(results=[_out(result) for result in results])


@router.get(
    "/streams/{stream:path}/state",
    response_model=StateOut,
    summary="Hydrated state of a stream",
    responses=problems(
        (404, "No aggregate for the stream's category, or no events within the bounds."),
        (409, "A recorded event does not decode into the aggregate (`error`)."),
    ),
)
def stream_state(
    stream: StreamPath,
    state: StateDep,
    key: ReadKey,
    version: Version = None,
    as_of: Annotated[Time | None, Query(description="What the store knew at this time.")] = None,
    occurred_as_of: Annotated[Time | None, Query(description="Business time.")] = None,
) -> StateOut:
    """The stream's aggregate (found by its category), now or as of the past.

    The bounds combine: `version`, `as_of` (recorded) and `occurred_as_of` (business time) each
    keep only the events within them; `as_of` with `occurred_as_of` is the bitemporal view.
    """
    check_stream_access(key, stream)
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
