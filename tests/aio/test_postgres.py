"""The native asyncio PostgreSQL store: what the synchronous store promises beyond the contract
suite (connection loss, live delivery across processes, the hash chain, sharing a schema)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

import chronik.aio
from chronik import NO_STREAM, NewEvent, StoreUnavailable, open_store
from chronik.aio import ThreadedStore
from chronik.aio.postgres import AsyncPostgresStore
from chronik.audit.seals import verify
from tests.conftest import service_url

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests.postgres_support import drop_schemas, new_schema_name, store_url

    base = service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")
    schema = new_schema_name()
    yield store_url(base, schema)
    drop_schemas(base, [schema])


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[AsyncPostgresStore]:
    opened = await chronik.aio.open_store(pg_url)
    assert isinstance(opened, AsyncPostgresStore)
    yield opened
    await opened.close()


def kill_backends(store: AsyncPostgresStore) -> int:
    """Terminate every server connection of this store's schema (its pool and its listener)."""
    with psycopg.connect(store.settings.conninfo, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (f"chronik:{store.settings.schema}",),
        ).fetchall()
    return len(rows)


async def test_a_killed_connection_is_a_retryable_error_for_a_write_and_retried_for_a_read(
    store: AsyncPostgresStore,
) -> None:
    await store.append("s-1", NewEvent(type="A", data={}))
    assert await asyncio.to_thread(kill_backends, store) >= 1
    assert await store.stream_version("s-1") == 0  # a read is tried once more on a fresh connection
    await store.append("s-1", NewEvent(type="B", data={}))
    assert await asyncio.to_thread(kill_backends, store) >= 1
    with pytest.raises(StoreUnavailable) as caught:
        await store.append("s-1", NewEvent(type="C", data={}))
    assert caught.value.retryable and isinstance(caught.value.__cause__, psycopg.OperationalError)
    await store.append("s-1", NewEvent(type="C", data={}))  # the pool replaced its dead connections
    assert await store.stream_version("s-1") == 2


async def test_a_unit_of_work_killed_before_commit_writes_nothing_and_the_retry_writes_once(
    store: AsyncPostgresStore,
) -> None:
    event = NewEvent(type="Paid", data={"cents": 100}, event_id=uuid.uuid4())
    with pytest.raises(StoreUnavailable):
        async with store.transaction() as uow:
            await uow.append("order-1", event, NO_STREAM)
            await asyncio.to_thread(kill_backends, store)
    assert await store.stream_version("order-1") is None
    assert not (await store.append("order-1", event, NO_STREAM)).already_recorded
    assert (await store.append("order-1", event, NO_STREAM)).already_recorded  # a lost reply's retry
    assert [e.event_id for e in await store.read_stream("order-1")] == [event.event_id]


async def test_a_waiter_is_woken_by_another_process_and_reads_the_synchronous_stores_writes(
    store: AsyncPostgresStore, pg_url: str
) -> None:
    head = await store.head_position()
    waiting = asyncio.create_task(store.wait_for_events(head, timeout=10))
    await asyncio.sleep(0.2)  # the listener is in place

    def append_elsewhere() -> None:
        with open_store(pg_url) as other:  # another pool, as another process would
            other.append("s-9", NewEvent(type="FromSync", data={}))

    await asyncio.to_thread(append_elsewhere)
    assert await asyncio.wait_for(waiting, 5) is True
    assert [e.type for e in await store.read_all(head + 1)] == ["FromSync"]


async def test_both_faces_write_one_log_with_one_hash_chain(store: AsyncPostgresStore, pg_url: str) -> None:
    await store.append("cart-1", [NewEvent(type="A", data={"n": n}) for n in range(3)])
    await store.append("cart-1", NewEvent(type="B", data={}, metadata={"actor": "ann"}))

    def sync_side() -> tuple[bool, int]:
        with open_store(pg_url) as sync:
            sync.append("cart-1", [NewEvent(type="C", data={}), NewEvent(type="D", data={})], 3)
            report = verify(sync, seal_after=False)
            return report.ok, report.events

    assert await asyncio.to_thread(sync_side) == (True, 6)
    await store.append("cart-1", NewEvent(type="E", data={}), 5)
    assert [e.type for e in await store.read_stream("cart-1")] == ["A", "A", "A", "B", "C", "D", "E"]

    def verified() -> bool:
        with open_store(pg_url) as sync:
            return verify(sync, seal_after=False).ok

    assert await asyncio.to_thread(verified)


async def test_the_threaded_adapter_waits_through_a_store_that_pushes(pg_url: str) -> None:
    """A synchronous store with its own `wait_for_events` (PostgreSQL's LISTEN) is waited on through
    it, on one thread for all waiters, when it runs behind `ThreadedStore` (as a future backend
    without a native asyncio face would)."""
    store = ThreadedStore(await asyncio.to_thread(open_store, pg_url), max_threads=4)
    try:
        head = await store.head_position()
        waiters = [asyncio.create_task(store.wait_for_events(head, timeout=10)) for _ in range(20)]
        await asyncio.sleep(0.3)

        def append_elsewhere() -> None:
            with open_store(pg_url) as other:
                other.append("s-1", NewEvent(type="Pushed", data={}))

        await asyncio.to_thread(append_elsewhere)
        assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True] * 20
    finally:
        await store.close()
