"""`create_app(store)`: the HTTP API, the live subscription, metrics and the web console, as one ASGI app.

The app is built around a store object it is given (tests pass a fresh one; `chronik serve`
opens the one its URL names), so nothing here is global: two apps on two stores never share
metrics, keys or workers.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from chronik.aio import ThreadedStore
from chronik.groups import GroupHandler
from chronik.server.context import AppPage, ReadKey, ServerState
from chronik.server.keys import KeyRing, KeyRingError, keyring_for
from chronik.server.live import LiveLog
from chronik.server.metrics import ServerMetrics
from chronik.server.middleware import BodyLimit, MetricsAndHeaders
from chronik.server.openapi import install_openapi
from chronik.server.problems import declare_json_body_problems, install_problem_handlers
from chronik.server.routes import APPLICATION_MODULES, groups, log, ops, projections, streams
from chronik.server.telemetry import install_collectors
from chronik.store import EventStore

logger = logging.getLogger("chronik.server")

STATIC_DIR: Final = Path(str(resources.files("chronik.server") / "static"))
DEFAULT_MAX_BODY: Final = 8 * 1024 * 1024
# Threads of the asyncio store: at least the concurrent writers plus the open units of work; past
# this, calls queue (on the loop, costing no thread) for the next free one.
AIO_THREADS: Final = 32

DESCRIPTION: Final = """\
chronik's HTTP API: append and read streams, read the whole log, follow it live (Server-Sent
Events), hydrate any registered aggregate as of a version or a time, watch projections and
consumer groups.

**Auth.** Send an API key as `Authorization: Bearer chronik_<id>_<secret>` (or `X-API-Key`).
On a loopback address where no key was ever created, requests are allowed without one;
revoking every key keeps keys required (`chronik keys open-access` opens the server again).

**Errors** are `application/problem+json`: 422 for a request that does not fit this schema
(`errors` names each field), 409 for what is refused given what is recorded (a version conflict
with `expected` and `actual`, a domain rule with `error`), 400 for a body that cannot be read,
404, 413 for an event or a request over the size limit, 401/403 for auth.
"""


def create_app(
    store: EventStore,
    *,
    keyring: KeyRing | None = None,
    allow_anonymous: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    applications: Sequence[str] = APPLICATION_MODULES,
    group_handlers: dict[str, GroupHandler] | None = None,
    console: bool = True,
    blobs_dir: Path | None = None,
) -> FastAPI:
    """Build the app. `allow_anonymous` (loopback only) admits requests without a key until keys are required.

    `blobs_dir` is where uploaded videos and their outputs live; by default beside a SQLite file
    (`app.db` -> `app-blobs/`), else `./chronik-blobs` (see `default_blobs_dir`).
    """
    if keyring is None:
        try:
            keyring = keyring_for(store)
        except KeyRingError as error:
            logger.warning("no API keys: %s", error)
    metrics = ServerMetrics()
    state = ServerState(
        store=store,
        keyring=keyring,
        metrics=metrics,
        allow_anonymous=allow_anonymous,
        max_body_bytes=max_body_bytes,
        group_handlers=dict(group_handlers or {}),
        blobs_dir=blobs_dir if blobs_dir is not None else default_blobs_dir(store),
    )

    # Every append through this store object is counted, whoever makes it (routes, demo workers).
    state.background.append(store.add_append_observer(metrics.observe_append))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The asyncio face for the append, read and subscription routes, on this loop, around the
        # same synchronous store: its append hooks (inline projections) and observers (the
        # metrics) run for these appends too, which a native asyncio store would not do.
        state.aio_store = ThreadedStore(store, max_threads=AIO_THREADS, close_sync=False)
        state.live = LiveLog(state.aio_store)
        await state.live.start()
        try:
            yield
        finally:
            state.stopping.set()
            await state.live.stop()
            for stop in reversed(state.background):
                try:
                    stop()
                except Exception:
                    logger.exception("stopping a background worker failed")
            await state.aio_store.close()  # waits for the calls in flight; `store` stays open
            state.aio_store = None

    app = FastAPI(
        title="chronik",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; the console's "API reference" page reads the schema
        redoc_url=None,
        openapi_url=None,  # served below, behind the read scope
    )
    app.state.chronik = state
    install_openapi(app)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_document(key: ReadKey) -> JSONResponse:
        """The schema needs what every read needs: it maps every operation and every application the
        server runs, which a server that requires keys shows to its key holders only."""
        return JSONResponse(app.openapi())

    install_problem_handlers(app)
    install_collectors(state)
    for router in (ops.router, streams.router, log.router, projections.router, groups.router):
        app.include_router(declare_json_body_problems(router))
    for page in _include_applications(app, applications):
        state.apps.append(page)
    if console:
        _mount_console(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(MetricsAndHeaders, metrics=metrics)
    return app


def default_blobs_dir(store: EventStore) -> Path:
    """Beside the SQLite file (a demo's blobs go where its database goes); for `memory://`, whose
    events vanish with the process, a folder under the system's temporary directory; else
    `./chronik-blobs`. Nothing is created until a video is stored."""
    path = getattr(store, "path", None)
    if isinstance(path, str | Path) and str(path) not in ("", ":memory:"):
        database = Path(path)
        return database.with_name(f"{database.stem}-blobs")
    if store.url.startswith("memory"):
        return Path(tempfile.gettempdir()) / f"chronik-blobs-{os.getpid()}-{id(store):x}"
    return Path("chronik-blobs")


def _include_applications(app: FastAPI, modules: Iterable[str]) -> list[AppPage]:
    """Mount each application module's `router` and collect its console `page`."""
    pages = []
    for name in modules:
        module = importlib.import_module(name)
        app.include_router(declare_json_body_problems(module.router))
        page = getattr(module, "page", None)
        if isinstance(page, AppPage):
            pages.append(page)
    return pages


def _mount_console(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/console", include_in_schema=False)
    def console_redirect() -> RedirectResponse:
        return RedirectResponse("/")
