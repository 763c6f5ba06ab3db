"""chronik's asyncio face: the same store, the same guarantees, for code that runs on an event loop.

    import chronik.aio

    store = await chronik.aio.open_store("sqlite:///shop.db")
    await store.append("cart-42", [chronik.NewEvent(type="ItemAdded", data={"sku": "tea"})])
    async for event in store.iter_all():
        print(event.stream, event.type)
    await store.close()

The synchronous API (`chronik.open_store`) stays first-class; this is its twin with the same
contract (`tests/contract/` runs on both). PostgreSQL is native (psycopg's async connections and
pool); every other backend gets the threaded adapter (`threaded.py`) automatically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from chronik.aio.repository import Repository
from chronik.aio.store import AsyncEventStore, AsyncUnitOfWork, HeadWatch
from chronik.aio.subscriptions import CatchUpSubscription
from chronik.aio.threaded import DEFAULT_THREADS, ThreadedStore, ThreadedUnitOfWork
from chronik.clock import Clock
from chronik.store import default_store_url
from chronik.store import open_store as open_sync_store

__all__ = [
    "DEFAULT_THREADS",
    "AsyncEventStore",
    "AsyncUnitOfWork",
    "CatchUpSubscription",
    "HeadWatch",
    "Repository",
    "ThreadedStore",
    "ThreadedUnitOfWork",
    "open_store",
]


async def _open_postgres(url: str, clock: Clock | None) -> AsyncEventStore:
    from chronik.aio.postgres import AsyncPostgresStore

    return await AsyncPostgresStore.open(url, clock=clock)


# URL schemes with a native asyncio store; every other scheme gets the threaded adapter.
NATIVE: Final[dict[str, Callable[[str, Clock | None], Awaitable[AsyncEventStore]]]] = {
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}


async def open_store(
    url: str | None = None, *, clock: Clock | None = None, max_threads: int = DEFAULT_THREADS
) -> AsyncEventStore:
    """Open the store a URL names (default: `$CHRONIK_STORE`, else `sqlite:///./chronik.db`), as
    `chronik.open_store` does, for asyncio. A backend without a native asyncio store runs on
    `max_threads` threads (`ThreadedStore`); opening it (a file, a migration) runs on a thread too."""
    url = url or default_store_url()
    scheme = url.split(":", 1)[0].lower()
    native = NATIVE.get(scheme)
    if native is not None:
        return await native(url, clock)
    store = await asyncio.to_thread(open_sync_store, url, clock=clock)
    return ThreadedStore(store, max_threads=max_threads)
