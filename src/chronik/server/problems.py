"""Errors as RFC 9457 problem details (`application/problem+json`), one mapping for the whole API.

Every chronik error already carries its facts as attributes; this module only picks the status
and copies those facts into the body (a 409 names the stream and both versions, a 413 the size
and the limit), so a client never parses a message. Unexpected errors become a bare 500: the
traceback goes to the server log, never into a response.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
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
    VersionNotFound,
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
    if isinstance(error, VersionNotFound):
        return (
            404,
            "Version not found",
            {"stream": error.stream, "version": error.version, "last_version": error.last_version},
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


def _where(location: Sequence[Any]) -> str:
    """Where a validation error is, as a client names it: `quantity`, `events.0.type`, `query parameter
    limit`."""
    parts = [str(part) for part in location]
    if parts[:1] == ["body"]:
        return ".".join(parts[1:]) or "the body"
    if parts[:1] in (["query"], ["path"], ["header"], ["cookie"]):
        kind = {"query": "query parameter", "path": "path parameter"}.get(parts[0], parts[0])
        return f"{kind} {'.'.join(parts[1:])}".strip()
    return ".".join(parts)


def reads_json_body(route: object) -> bool:
    """Whether a route reads a JSON body (not a form, such as a video upload)."""
    body = route.body_field if isinstance(route, APIRoute) else None
    return body is not None and not isinstance(body.field_info, params.Form)


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def validation_problem(request: Request, errors: Sequence[Any]) -> tuple[int, str, str]:
    """(status, title, detail) for a request FastAPI could not validate, naming what is wrong.

    Malformed JSON is 400 (the body cannot be read at all); a JSON route sent something that is
    not JSON (no Content-Type, text/plain, a form) is 415; anything else is 422, and the detail
    names every field with its problem, so a client (the console's forms) can show it as it is.
    """
    malformed = [item for item in errors if item.get("type") == "json_invalid"]
    if malformed:
        item = malformed[0]
        reason = (item.get("ctx") or {}).get("error", "not JSON")
        position = item.get("loc", ("body", "?"))[-1]
        return 400, "Malformed JSON", f"the body is not valid JSON: {reason} (at character {position})"
    content_type = request.headers.get("content-type")
    body_refused = any(tuple(item.get("loc", ()))[:1] == ("body",) for item in errors)
    if body_refused and reads_json_body(request.scope.get("route")) and not is_json(content_type):
        sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        return (
            415,
            "Unsupported media type",
            f"send the body as JSON with Content-Type: application/json (this request sent {sent})",
        )
    named = "; ".join(f"{_where(item.get('loc', ()))}: {item.get('msg', '')}" for item in errors)
    return 422, "Invalid request", named or "the request does not match the API schema"


UNSUPPORTED_MEDIA_TYPE: Final = {
    "description": "The body is not JSON: send it with Content-Type: application/json.",
    "content": {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            }
        }
    },
}


def declare_json_body_problems(router: APIRouter) -> APIRouter:
    """Every route of `router` that reads a JSON body may answer 415: say so in its OpenAPI responses."""
    for route in router.routes:
        if isinstance(route, APIRoute) and reads_json_body(route):
            route.responses.setdefault(415, UNSUPPORTED_MEDIA_TYPE)
    return router


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
        status, title, detail = validation_problem(request, error.errors())
        errors = [
            {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", ""))}
            for item in error.errors()
        ]
        return problem_response(status, title, detail, errors=errors)

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
