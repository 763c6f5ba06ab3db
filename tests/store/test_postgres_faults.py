"""Connection loss on PostgreSQL: a clear retryable error, a pool that recovers, and safe retries.

Connections are killed with `pg_terminate_backend` (what a failover, an idle-session killer or a
server restart does to a client), and a TCP proxy plays a server that is away for a while and
comes back. The server itself is not restarted here: other test runs share it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from chronik import NO_STREAM, NewEvent, StoreUnavailable, open_store
from chronik.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def kill_backends(store: PostgresStore) -> int:
    """Terminate every server connection of this store (its pool and its listener)."""
    with psycopg.connect(store.conninfo, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (f"chronik:{store.schema}",),
        ).fetchall()
    return len(rows)


def test_a_write_on_a_killed_connection_is_a_retryable_error_and_the_next_call_works(
    store: PostgresStore,
) -> None:
    store.append("s-1", NewEvent(type="A", data={}))
    assert kill_backends(store) >= 1
    with pytest.raises(StoreUnavailable) as caught:
        store.append("s-1", NewEvent(type="B", data={}))
    assert caught.value.retryable
    assert "retry" in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    store.append("s-1", NewEvent(type="B", data={}))  # the pool replaced its dead connections
    assert store.stream_version("s-1") == 1


def test_a_read_on_a_killed_connection_is_retried_once_on_a_fresh_one(store: PostgresStore) -> None:
    store.append("s-1", NewEvent(type="A", data={}))
    assert kill_backends(store) >= 1
    assert store.stream_version("s-1") == 0


def test_a_store_whose_server_cannot_be_reached_says_so(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    unreachable = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:1"))
    with pytest.raises(StoreUnavailable) as caught:
        open_store(unreachable + "&connect_timeout=2")
    assert caught.value.retryable


def test_append_killed_before_commit_fails_cleanly_and_the_retry_writes_once(store: PostgresStore) -> None:
    event = NewEvent(type="Paid", data={"cents": 100}, event_id=uuid.uuid4())
    with pytest.raises(StoreUnavailable), store.transaction() as uow:
        uow.append("order-1", event, NO_STREAM)
        kill_backends(store)  # the connection dies with the transaction open: the commit fails
    result = store.append("order-1", event, NO_STREAM)  # the caller's retry, same ids
    assert not result.already_recorded
    assert [e.event_id for e in store.read_stream("order-1")] == [event.event_id]


def test_append_whose_acknowledgement_was_lost_is_acknowledged_on_retry(store: PostgresStore) -> None:
    event = NewEvent(type="Paid", data={"cents": 100}, event_id=uuid.uuid4())
    first = store.append("order-2", event, NO_STREAM)  # committed; suppose the reply never arrived
    kill_backends(store)
    with pytest.raises(StoreUnavailable):
        store.append("order-2", event, NO_STREAM)  # the retry meets the dead connection first
    again = store.append("order-2", event, NO_STREAM)
    assert again.already_recorded and again.global_positions == first.global_positions
    assert [e.event_id for e in store.read_stream("order-2")] == [event.event_id]


def test_appends_under_random_connection_kills_are_recorded_exactly_once(store: PostgresStore) -> None:
    """A writer retries each append (same ids) until acknowledged while its connections are killed."""
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        rng = random.Random(7)
        while not stop.is_set():
            time.sleep(rng.uniform(0.005, 0.03))
            kills += kill_backends(store)

    thread = threading.Thread(target=killer)
    thread.start()
    acknowledged: list[uuid.UUID] = []
    failures = 0
    try:
        for i in range(60):
            event = NewEvent(type="Step", data={"i": i}, event_id=uuid.uuid4())
            for _ in range(200):
                try:
                    store.append("run-1", event, i - 1 if i else NO_STREAM)
                    break
                except StoreUnavailable:
                    failures += 1
            else:
                pytest.fail("an append never got through")
            acknowledged.append(event.event_id)
    finally:
        stop.set()
        thread.join()
    assert kills > 0 and failures > 0, "no connection was killed mid-run: the test proved nothing"
    recorded = store.read_stream("run-1")
    assert [e.event_id for e in recorded] == acknowledged
    assert [e.data["i"] for e in recorded] == list(range(60))


def test_a_server_that_goes_away_and_comes_back(pg_url: str) -> None:
    """Through a proxy that drops every connection and refuses new ones for a while (a restart)."""
    from tests.store.tcp_proxy import Proxy

    parts = urlsplit(pg_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    through_proxy = urlunsplit(
        parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}")
    )
    store = open_store(through_proxy + "&pool_timeout=2&connect_timeout=2")
    try:
        store.append("s-1", NewEvent(type="A", data={}))
        proxy.down()
        with pytest.raises(StoreUnavailable):
            store.append("s-1", NewEvent(type="B", data={}))
        with pytest.raises(StoreUnavailable):  # reads too, once their retry has failed as well
            store.read_stream("s-1")
        proxy.up()
        deadline = time.monotonic() + 15
        while True:  # the pool reconnects in the background, with a back-off
            try:
                store.append("s-1", NewEvent(type="C", data={}))
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not recover after the server came back"
                time.sleep(0.2)
        assert [e.type for e in store.read_stream("s-1")] == ["A", "C"]
    finally:
        store.close()
        proxy.close()
