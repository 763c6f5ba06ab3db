"""What the OpenAPI schema says beyond the routes' own models: the errors, written once for all.

Every error is `application/problem+json` (`server/problems.py`), so every documented error
response points at one `Problem` schema. Some responses follow from how the server is built,
not from what a route does, and are added to every operation they apply to, so no route can
forget them: 401 and 403 wherever a key is checked (the operation has `security`), 400 wherever a body
is read (one that is not JSON, or not UTF-8, cannot be parsed at all), 413 on every POST, PUT
and PATCH (`middleware.BodyLimit` reads every body), 422 wherever there is a parameter or a body
to validate (FastAPI's own 422 says `application/json` and a shape the server never sends).
What a route itself can answer (404, 409, ...) it declares with `problems(...)`.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from chronik.server.models import JSON_WITHOUT_NUL, NO_NUL
from chronik.server.problems import PROBLEM_JSON

_REF: Final = "#/components/schemas/"

PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; its facts are extra fields (`stream`, `expected`, ...).",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "With 422: each field that does not fit, and why.",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

JSON_WITHOUT_NUL_SCHEMA: Final[dict[str, Any]] = {
    "title": JSON_WITHOUT_NUL,
    "description": "Any JSON value with no U+0000 in a string or a key.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": _REF + JSON_WITHOUT_NUL}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": _REF + JSON_WITHOUT_NUL},
        },
    ],
}

DESCRIPTIONS: Final = {
    400: "The body cannot be read as its media type (not JSON, not UTF-8, a broken multipart).",
    401: "No key, or an unknown or revoked one, while keys are required (`WWW-Authenticate: Bearer`).",
    403: "The key lacks the scope, or the stream is outside its prefixes.",
    404: "Not found.",
    409: "Refused given what is recorded: a version conflict, a domain rule (`error` names it).",
    413: "The request body is over the server's limit, or an event over the store's (`size`, `limit`).",
    422: "The request does not fit this schema: `errors` names each field and what is wrong.",
    501: "Not supported by this store (projections need SQL: not on `memory://`).",
    503: "The store is unavailable (`Retry-After`).",
}


UNDECODABLE: Final = (
    409,
    "A recorded event does not decode into its aggregate (written outside this API, or by older code): "
    "`Stored event does not decode`, its `error` names why.",
)
"""For the routers of the applications, whose reads load aggregates (a route's own 409 replaces it)."""


def problem(status: int, description: str | None = None) -> dict[str, Any]:
    """One documented error response: a problem+json body, with what it means on this route."""
    return {
        "description": description or DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": _REF + "Problem"}}},
    }


def problems(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route or router: `problems(404, (409, "the video is not parked"))`."""
    out: dict[int | str, dict[str, Any]] = {}
    for item in statuses:
        status, description = item if isinstance(item, tuple) else (item, None)
        out[status] = problem(status, description)
    return out


_WITH_BODY: Final = frozenset({"post", "put", "patch"})


_NULL: Final = {"type": "null"}


def _absent_not_null(parameter: dict[str, Any]) -> None:
    """A parameter that may be left out is not `required`; `anyOf: [..., null]` (pydantic's way to
    say `X | None`) would say it can be sent as null, which no query string or header can carry."""
    schema = parameter.get("schema", {})
    branches = schema.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and _NULL in branches:
        [kept] = [branch for branch in branches if branch != _NULL]
        parameter["schema"] = {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept}


def _complete(operation: dict[str, Any], method: str) -> None:
    """Add the responses that follow from how the server is built (see the module's docstring)."""
    for parameter in operation.get("parameters", []):
        _absent_not_null(parameter)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    added: list[int] = []
    if operation.get("security"):
        added += [401, 403]
    if operation.get("requestBody"):
        added.append(400)
    if method in _WITH_BODY:
        added.append(413)
    if operation.get("parameters") or operation.get("requestBody"):
        added.append(422)
    for status in added:
        key = str(status)
        if key == "422" or key not in responses:  # FastAPI's 422 describes a body never sent
            responses[key] = problem(status)


def install_openapi(app: FastAPI) -> None:
    """Serve `app.openapi()` with the shared error responses and schemas added (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path in schema.get("paths", {}).values():
                for method, operation in path.items():
                    _complete(operation, method)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            schemas["Problem"] = PROBLEM_SCHEMA
            schemas[JSON_WITHOUT_NUL] = JSON_WITHOUT_NUL_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010 - FastAPI's documented way to extend the schema
