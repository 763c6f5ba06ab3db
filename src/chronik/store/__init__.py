"""Event stores: one contract (`contract.py`), one module per backend, chosen by URL.

    memory://                          everything in this process's memory
    sqlite:///relative/path.db         the embedded default (four slashes for an absolute path)
    postgresql://user@host:port/db     a PostgreSQL server

Query parameters tune a backend, e.g. `sqlite:///app.db?synchronous=normal`,
`...?max_event_bytes=65536`. `CHRONIK_STORE` overrides the default URL.
"""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import parse_qs, urlsplit

from chronik.clock import Clock
from chronik.errors import UnsupportedStoreURL
from chronik.events.envelope import DEFAULT_MAX_EVENT_BYTES
from chronik.store.contract import (
    AppendRequest,
    AppendResult,
    EventStore,
    ExistingEvent,
    Snapshot,
    StreamInfo,
    UnitOfWork,
)

DEFAULT_STORE_URL: Final = "sqlite:///./chronik.db"

__all__ = [
    "DEFAULT_STORE_URL",
    "AppendRequest",
    "AppendResult",
    "EventStore",
    "ExistingEvent",
    "Snapshot",
    "StreamInfo",
    "UnitOfWork",
    "default_store_url",
    "open_store",
    "url_options",
]


def default_store_url() -> str:
    return os.environ.get("CHRONIK_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None, *, clock: Clock | None = None) -> EventStore:
    """Open the store a URL names (default: `$CHRONIK_STORE`, else `sqlite:///./chronik.db`)."""
    url = url or default_store_url()
    parts = urlsplit(url)
    scheme, options, max_event_bytes = url_options(url)
    if scheme == "memory":
        from chronik.store.memory import MemoryStore

        _no_options_left(url, options)
        return MemoryStore(clock=clock, max_event_bytes=max_event_bytes)
    if scheme == "sqlite":
        from chronik.store.sqlite import SQLiteStore

        # sqlite:///relative.db -> path "relative.db"; sqlite:////abs/x.db -> "/abs/x.db"
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise UnsupportedStoreURL(url, "write sqlite:///relative/path.db or sqlite:////absolute/path.db")
        synchronous = options.pop("synchronous", "full")
        try:
            busy_timeout = float(options.pop("busy_timeout", 30.0))
        except ValueError:
            raise UnsupportedStoreURL(url, "busy_timeout must be a number of seconds") from None
        _no_options_left(url, options)
        return SQLiteStore(
            path,
            clock=clock,
            max_event_bytes=max_event_bytes,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
        )
    if scheme in ("postgresql", "postgres"):
        try:
            from chronik.store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as error:
            raise UnsupportedStoreURL(url, f"the PostgreSQL backend is not available: {error}") from None
        store: EventStore = PostgresStore.from_url(url, clock=clock, max_event_bytes=max_event_bytes)
        return store
    raise UnsupportedStoreURL(url, "the scheme must be memory://, sqlite:/// or postgresql://")


def url_options(url: str) -> tuple[str, dict[str, str], int]:
    """A store URL's scheme (lower case), its query options, and `max_event_bytes` taken out of them."""
    parts = urlsplit(url)
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    try:
        max_event_bytes = int(options.pop("max_event_bytes", DEFAULT_MAX_EVENT_BYTES))
    except ValueError:
        raise UnsupportedStoreURL(url, "max_event_bytes must be a whole number") from None
    return parts.scheme.lower(), options, max_event_bytes


def _no_options_left(url: str, options: dict[str, str]) -> None:
    if options:
        raise UnsupportedStoreURL(url, f"unknown option(s): {', '.join(sorted(options))}")
