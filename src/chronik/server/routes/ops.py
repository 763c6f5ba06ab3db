"""Operations: liveness, readiness, Prometheus metrics, and what this server offers (for the console)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from chronik.server.context import ANONYMOUS, ReadKey, StateDep, authenticate
from chronik.server.openapi import problems
from chronik.server.problems import Problem

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process answers. Open to everyone: it says nothing about the data."""
    return {"status": "ok"}


@router.get(
    "/readyz", summary="Readiness", responses=problems((503, "The store does not answer, or shutting down."))
)
def readyz(request: Request, state: StateDep) -> dict[str, Any]:
    """The store answers a read; 503 otherwise (a load balancer then sends traffic elsewhere).

    Open to all; the log's head position is included only for callers allowed to read.
    """
    try:
        head = state.store.head_position()
    except Exception:
        raise Problem(503, "Not ready", "the store does not answer", headers={"Retry-After": "1"}) from None
    if state.stopping.is_set():
        raise Problem(503, "Not ready", "the server is shutting down")
    try:
        allowed = authenticate(request, state).has_scope("read")
    except Problem:
        allowed = False
    return {"status": "ready", "head_position": head} if allowed else {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, **problems(503)},
)
async def metrics(state: StateDep, key: ReadKey) -> PlainTextResponse:
    """Appends, reads, subscriptions, projection and consumer-group lag, parked events, rebalances."""
    text = await run_in_threadpool(state.metrics.render)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/api/info", summary="What this server offers", tags=["console"], responses=problems(503))
def info(request: Request, state: StateDep) -> dict[str, Any]:
    """Store, auth mode and the applications' console pages.

    Open to all: the console reads it before it knows a key.
    """
    keys_required = state.keys_required()
    who: dict[str, Any] | None = None
    try:
        key = authenticate(request, state)
        who = {"name": key.name, "scopes": list(key.scopes), "stream_prefixes": list(key.stream_prefixes)}
        if key is ANONYMOUS:
            who["anonymous"] = True
    except Problem:
        who = None
    return {
        "name": "chronik",
        "store": type(state.store).__name__,
        "keys_required": keys_required,
        "you": who,
        "apps": [
            {"name": page.name, "title": page.title, "description": page.description} for page in state.apps
        ],
    }
