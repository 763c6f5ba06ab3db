"""The whole log: paged reads, one operation's events, and a live subscription by Server-Sent Events.

Every route here is a coroutine on the server's asyncio store (`state.aio`): no thread per
request, none per subscriber. The subscription is catch-up then live over one connection: it
pages through the log from `from_position`, sends a `caught_up` event, then waits for new events
in the server's live window (`server/live.py`): one task reads and encodes each new event
once for every subscriber, woken by the asyncio store's head watcher (an append through this
server wakes it at once). A subscriber behind the window catches up from the store itself.
Each event's SSE `id` is its global position, so a browser's `EventSource` reconnects with
`Last-Event-ID` and resumes right after the last event it got. Every subscription is bounded
(`max_events`, `timeout`), so a test, a script or a forgotten tab always ends.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from chronik.events.envelope import CATEGORY_PATTERN, EVENT_TYPE_PATTERN, MAX_NAME_LENGTH, RecordedEvent
from chronik.server.context import ReadKey, ServerState, StateDep
from chronik.server.keys import ApiKey
from chronik.server.live import sse_text
from chronik.server.models import MAX_INT, MAX_PAGE, LogPage, json_response
from chronik.server.openapi import problems

router = APIRouter(prefix="/api", tags=["log"], responses=problems(503))

PAGE: Final = 500
_subscription_ids = itertools.count(1)

LAST_EVENT_ID: Final = r"^[0-9]{1,15}$"
Category = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=CATEGORY_PATTERN)]
EventTypeName = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=EVENT_TYPE_PATTERN)]
Categories = Annotated[list[Category] | None, Query(max_length=50, description="Only these categories.")]
EventTypes = Annotated[
    list[EventTypeName] | None, Query(max_length=50, description="Only these event types.")
]


def _visible(events: Sequence[RecordedEvent], key: ApiKey) -> list[RecordedEvent]:
    return list(events) if not key.stream_prefixes else [e for e in events if key.allows_stream(e.stream)]


@router.get("/log", response_model=LogPage, summary="Read the whole log")
async def read_log(
    state: StateDep,
    key: ReadKey,
    from_position: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    category: Categories = None,
    type: EventTypes = None,
) -> Response:
    """Events in global order from `from_position` (inclusive), optionally only some categories or types."""
    head = await state.aio.head_position()
    page = await state.aio.read_all(
        from_position, to_position=head, categories=category or None, event_types=type or None, limit=limit
    )
    next_from = page[-1].global_position + 1 if len(page) >= limit else max(from_position, head + 1)
    visible = _visible(page, key)
    state.metrics.reads.inc("log")
    state.metrics.read_events.inc("log", amount=len(visible))
    return json_response(
        {"head_position": head, "events": [e.to_dict() for e in visible], "next_from_position": next_from}
    )


@router.get("/correlations/{correlation_id}", response_model=LogPage, summary="One operation's events")
async def correlated(correlation_id: str, state: StateDep, key: ReadKey) -> dict[str, Any]:
    """Every event whose metadata carries this correlation id, across streams, in global order."""
    events = _visible(await state.aio.read_correlated(correlation_id), key)
    head = await state.aio.head_position()
    return {"head_position": head, "events": [e.to_dict() for e in events], "next_from_position": head + 1}


def _wanted(event: RecordedEvent, categories: list[str] | None, types: list[str] | None, key: ApiKey) -> bool:
    """The subscription's filters, as `read_all` applies them, and the key's stream prefixes."""
    return (
        (not categories or event.category in categories)
        and (not types or event.type in types)
        and key.allows_stream(event.stream)
    )


async def _stream(
    request: Request,
    state: ServerState,
    key: ApiKey,
    start: int,
    categories: list[str] | None,
    types: list[str] | None,
    max_events: int,
    timeout: float,
    heartbeat: float,
) -> AsyncIterator[str]:
    number = next(_subscription_ids)
    store = state.aio
    metrics = state.metrics
    metrics.subscriptions.inc()
    deadline = time.monotonic() + timeout
    position = start  # the next position to read
    sent = 0
    caught_up = False
    next_heartbeat = time.monotonic() + heartbeat
    try:
        yield f"retry: 1000\n: subscribed from position {start}\n\n"
        while sent < max_events and time.monotonic() < deadline and not state.stopping.is_set():
            live = state.live
            wait: Callable[[int, float], Awaitable[bool]]
            if live is not None and live.covers(position):
                # In the live window: the server's one reader has read (and encoded) these already.
                head = live.scanned
                if position <= head:
                    scanned_to = head
                    for event, text in live.since(position):  # a snapshot: nothing past `head`
                        if not _wanted(event, categories, types, key):
                            continue
                        if sent >= max_events:
                            scanned_to = event.global_position - 1  # resume at the first event not sent
                            break
                        yield text
                        sent += 1
                        metrics.subscription_events.inc()
                    position = scanned_to + 1
                    state.subscription_positions[number] = position - 1
                    continue
                head = max(head, position - 1)  # the store's head, read while catching up, may be ahead
                wait = live.wait
            else:
                head = await store.head_position()
                if position <= head:
                    page = await store.read_all(
                        position, to_position=head, categories=categories, event_types=types, limit=PAGE
                    )
                    scanned_to = page[-1].global_position if len(page) >= PAGE else head
                    for event in _visible(page, key):
                        if sent >= max_events:
                            scanned_to = event.global_position - 1  # resume at the first event not sent
                            break
                        yield sse_text(event)
                        sent += 1
                        metrics.subscription_events.inc()
                    position = scanned_to + 1
                    state.subscription_positions[number] = position - 1
                    continue
                wait = store.wait_for_events
            state.subscription_positions[number] = head
            if not caught_up:
                caught_up = True
                yield f"event: caught_up\ndata: {json.dumps({'head_position': head})}\n\n"
            if await request.is_disconnected():
                return
            if time.monotonic() >= next_heartbeat:
                yield ": keep-alive\n\n"
                next_heartbeat = time.monotonic() + heartbeat
            # At most a second at a time: `stopping` and the client's disconnect are looked at.
            now = time.monotonic()
            await wait(head, max(0.0, min(1.0, deadline - now, next_heartbeat - now)))
        reason = "max_events" if sent >= max_events else "stopping" if state.stopping.is_set() else "timeout"
        end = {"reason": reason, "sent": sent, "next_position": position}
        yield f"event: end\ndata: {json.dumps(end)}\n\n"
    finally:
        metrics.subscriptions.dec()
        state.subscription_positions.pop(number, None)


@router.get(
    "/log/subscribe",
    summary="Live subscription (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "A stream of SSE events."}},
)
async def subscribe(
    request: Request,
    state: StateDep,
    key: ReadKey,
    from_position: Annotated[int, Query(ge=0, le=MAX_INT, description="First position to send.")] = 0,
    category: Categories = None,
    type: EventTypes = None,
    max_events: Annotated[int, Query(ge=1, le=1_000_000)] = 10_000,
    timeout: Annotated[float, Query(gt=0, le=3600, description="Seconds before the server ends it.")] = 300,
    heartbeat: Annotated[float, Query(ge=0.5, le=300)] = 15,
    last_event_id: Annotated[
        str | None, Header(pattern=LAST_EVENT_ID, description="The global position last received.")
    ] = None,
) -> StreamingResponse:
    """Catch up from `from_position`, then follow the log live. `Last-Event-ID` resumes after that position.

    Events: unnamed (`message`) events carry one recorded event as JSON with `id` = its global
    position; `caught_up` once the backlog is sent; `end` when a bound is reached.
    """
    start = from_position if last_event_id is None else int(last_event_id) + 1  # the pattern: digits
    generator = _stream(
        request, state, key, start, category or None, type or None, max_events, timeout, heartbeat
    )
    return StreamingResponse(
        generator,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
