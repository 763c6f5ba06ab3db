"""What every route needs: the store, the key ring, the metrics, the running workers; and who is calling.

One `ServerState` per app, reached through `request.app.state.chronik`. Routes get it, and the
caller's key, through FastAPI dependencies (`StateDep`, `require("read")`), so tests can build an
app around any store without globals.

The dependencies are coroutines: FastAPI runs a plain `def` dependency on a thread, and the hot
routes (append, read, the live subscription) are meant to take no thread of their own. Checking
a key reads the key table, so that one step goes to a thread, only when a key is presented or
the "are keys required?" answer is more than a second old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from chronik.groups import GroupHandler, GroupMember
from chronik.projections import Projection
from chronik.server.keys import ApiKey, KeyRing
from chronik.server.metrics import ServerMetrics
from chronik.server.problems import Problem
from chronik.store import EventStore

if TYPE_CHECKING:
    from chronik.aio import AsyncEventStore
    from chronik.server.live import LiveLog

ANONYMOUS: Final = ApiKey(
    key_id="",
    name="anonymous (loopback, no keys configured)",
    scopes=("read", "append", "admin"),
    stream_prefixes=(),
    created_at=datetime(1970, 1, 1, tzinfo=UTC),
)


@dataclass
class AppPage:
    """An application's page in the console: `static/apps/<name>.js` draws it (the extension point)."""

    name: str
    title: str
    description: str = ""


@dataclass
class ServerState:
    store: EventStore
    keyring: KeyRing | None
    metrics: ServerMetrics
    allow_anonymous: bool = True  # loopback with no keys; False when bound to another address
    max_body_bytes: int = 8 * 1024 * 1024
    group_handlers: dict[str, GroupHandler] = field(default_factory=dict)
    members: list[GroupMember] = field(default_factory=list)
    projections: dict[str, Projection] = field(default_factory=dict)
    rebuilds: dict[str, dict[str, Any]] = field(default_factory=dict)
    apps: list[AppPage] = field(default_factory=list)
    background: list[Callable[[], None]] = field(default_factory=list)  # stop functions, run at shutdown
    subscription_positions: dict[int, int] = field(default_factory=dict)
    demo: dict[str, Any] = field(default_factory=dict)  # the demo's moving parts, for tests
    blobs_dir: Path | None = None  # the video example's content-addressed blob folder (made on first use)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    # The same store's asyncio face, for the append, read and subscription routes: opened by the
    # app's lifespan on the server's event loop (`ThreadedStore` around `store`, so that append
    # hooks and observers, the metrics among them, see every append), closed at shutdown.
    aio_store: AsyncEventStore | None = None
    live: LiveLog | None = None  # the newest events, read once for every live subscriber
    _keys_checked: float = 0.0
    _keys_required: bool = False

    @property
    def aio(self) -> AsyncEventStore:
        """The asyncio face of `store` (raises if the app's lifespan has not opened it)."""
        if self.aio_store is None:
            raise RuntimeError("the server's asyncio store is not open: run the app with its lifespan")
        return self.aio_store

    def keys_known(self) -> bool:
        """Whether `keys_required()` answers from memory (no key table read)."""
        fresh = time.monotonic() - self._keys_checked <= 1.0
        return not self.allow_anonymous or self.keyring is None or fresh

    def keys_required(self) -> bool:
        """Whether requests need a key (`KeyRing.requires_keys`: revoking every key keeps them
        required), re-read at most once a second (keys change from the CLI)."""
        if not self.allow_anonymous:
            return True
        if self.keyring is None:
            return False
        now = time.monotonic()
        if now - self._keys_checked > 1.0:
            self._keys_required = self.keyring.requires_keys()
            self._keys_checked = now
        return self._keys_required

    def forget_key_cache(self) -> None:
        self._keys_checked = 0.0


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.chronik
    return state


async def get_state(request: Request) -> ServerState:
    """The dependency (a coroutine: no thread per request)."""
    return state_of(request)


StateDep = Annotated[ServerState, Depends(get_state)]


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request, state: ServerState) -> ApiKey:
    """The caller's key; 401 when one is needed and missing or wrong."""
    token = presented_token(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="chronik"'}
    if token is None:
        if not state.keys_required():
            return ANONYMOUS
        detail = (
            "this server requires an API key: send 'Authorization: Bearer <key>' "
            "(create one with `chronik keys create`)"
        )
        raise Problem(401, "Unauthorized", detail, headers=challenge)
    key = state.keyring.verify(token) if state.keyring is not None else None
    if key is None:
        raise Problem(401, "Unauthorized", "the API key is unknown or revoked", headers=challenge)
    return key


# Declared on every route that checks a key, so the OpenAPI schema lists both ways of sending one
# (`securitySchemes`); `authenticate` reads the same two headers itself.
_BEARER: Final = HTTPBearer(
    auto_error=False, description="An API key: `Authorization: Bearer chronik_<id>_<secret>`."
)
_API_KEY: Final = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, as a header.")


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the caller's key, which must have `scope` (admin implies every scope)."""

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
        api_key: Annotated[str | None, Depends(_API_KEY)],
    ) -> ApiKey:
        del bearer, api_key  # for the schema: authenticate reads the headers (and tells 401 apart)
        state = state_of(request)
        if presented_token(request) is None and state.keys_known():
            key = authenticate(request, state)  # answered from memory
        else:
            key = await run_in_threadpool(authenticate, request, state)  # reads the key table
        if not key.has_scope(scope):
            raise Problem(
                403, "Forbidden", f"the key {key.name!r} lacks the {scope!r} scope", scopes=list(key.scopes)
            )
        request.state.api_key = key
        return key

    dependency.__name__ = f"require_{scope}"
    return dependency


ReadKey = Annotated[ApiKey, Depends(require("read"))]
AppendKey = Annotated[ApiKey, Depends(require("append"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]


def check_stream_access(key: ApiKey, stream: str) -> None:
    if not key.allows_stream(stream):
        raise Problem(
            403,
            "Forbidden",
            f"the key {key.name!r} is limited to streams starting with {', '.join(key.stream_prefixes)}",
            stream=stream,
        )


def check_unrestricted(key: ApiKey, what: str) -> None:
    """Log-wide read models can hold any stream's data: keys limited to prefixes cannot read them."""
    if key.stream_prefixes:
        raise Problem(
            403, "Forbidden", f"{what} span every stream; the key {key.name!r} is limited to prefixes"
        )
