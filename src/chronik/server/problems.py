"""Errors as RFC 9457 problem details (`application/problem+json`), one mapping for the whole API.

Every chronik error already carries its facts as attributes; this module only picks the status
and copies those facts into the body (a 409 names the stream and both versions, a 413 the size
and the limit), so a client never parses a message. Unexpected errors become a bare 500: the
traceback goes to the server log, never into a response.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from chronik.domain.aggregate import NoApplier
from chronik.errors import (
    ChronikError,
    DomainError,
    DuplicateEventId,
    EventDecodingError,
    EventTooLarge,
    HistoricalAggregate,
    InvalidInput,
    StoreUnavailable,
    StreamNotFound,
    UnknownAggregateType,
    WrongExpectedVersion,
)
from chronik.events.envelope import StreamState
from chronik.groups import GroupError
from chronik.projections import UnsupportedStore

log = logging.getLogger("chronik.server")

PROBLEM_JSON: Final = "application/problem+json"


class Problem(Exception):
    """An HTTP error raised by the server's own code, with extra fields for the body."""

    def __init__(self, status: int, title: str, detail: str = "", **extra: Any) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = extra.pop("headers", {}) or {}
        super().__init__(detail or title)


def problem_response(
    status: int, title: str, detail: str = "", *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _version(value: object) -> object:
    return value.value if isinstance(value, StreamState) else value


def problem_for(error: ChronikError) -> tuple[int, str, dict[str, Any]]:
    """(status, title, extra fields) for one of chronik's errors."""
    if isinstance(error, WrongExpectedVersion):
        return (
            409,
            "Wrong expected version",
            {
                "stream": error.stream,
                "expected": _version(error.expected),
                "actual": error.actual,
            },
        )
    if isinstance(error, DuplicateEventId):
        return (
            409,
            "Duplicate event id",
            {
                "event_id": str(error.event_id),
                "recorded_in": error.recorded_in,
                "recorded_version": error.recorded_version,
            },
        )
    if isinstance(error, EventTooLarge):
        return (
            413,
            "Event too large",
            {"event_type": error.event_type, "size": error.size, "limit": error.limit},
        )
    if isinstance(error, EventDecodingError | NoApplier):  # recorded events its code cannot apply
        return 409, "Stored event does not decode", {"error": type(error).__name__}
    if isinstance(error, StreamNotFound):
        return 404, "Stream not found", {"stream": error.stream}
    if isinstance(error, UnknownAggregateType):
        return 404, "No aggregate for this category", {"category": error.category, "known": list(error.known)}
    if isinstance(error, HistoricalAggregate):
        return 409, "Historical aggregate", {}
    if isinstance(error, DomainError):  # depends on what is recorded: a conflict, unlike a 422
        return 409, "Refused by the domain", {"error": type(error).__name__}
    if isinstance(error, UnsupportedStore):
        return 501, "Not supported by this store", {}
    if isinstance(error, LookupError):
        return 404, "Not found", {}
    if isinstance(error, GroupError):
        return 409, "Consumer group refused", {}
    if isinstance(error, InvalidInput):
        return 400, "Invalid input", {}
    if isinstance(error, StoreUnavailable):
        return 503, "Store unavailable", {"retryable": error.retryable}
    return 400, "Request refused", {}


_METHODS: Final = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route takes at the request's path (the `Allow` of a 405): each method is
    tried against the routes, as the router itself would match it."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(error.status, error.title, error.detail, headers=error.headers, **error.extra)

    @app.exception_handler(ChronikError)
    async def _chronik(request: Request, error: ChronikError) -> JSONResponse:
        status, title, extra = problem_for(error)
        headers = {"Retry-After": "1"} if status == 503 else None
        return problem_response(status, title, str(error), headers=headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", ""))}
            for item in error.errors()
        ]
        return problem_response(
            422, "Invalid request", "the request does not match the API schema", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        headers = dict(error.headers) if error.headers else {}
        if error.status_code == 405:  # Starlette names the methods of one route; a path has several
            headers["Allow"] = allowed_methods(request)
        return problem_response(
            error.status_code,
            titles.get(error.status_code, "HTTP error"),
            str(error.detail) if error.detail else "",
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal server error", "the error was logged on the server")
