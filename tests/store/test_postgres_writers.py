"""Writers on PostgreSQL: different streams do not wait for each other, one stream's writers take
turns, and an open transaction holds readers back at its position (not beyond)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from chronik import NewEvent, open_store
from chronik.store import EventStore

pytestmark = pytest.mark.postgres


def test_an_open_append_blocks_its_stream_only_and_holds_readers_at_its_position(
    stores: tuple[EventStore, EventStore],
) -> None:
    store, other = stores
    other_stream_done = threading.Event()
    same_stream_done = threading.Event()
    with store.transaction() as uow:
        held = uow.append("acct-a", NewEvent(type="Held", data={}))

        def append_to(stream: str, done: threading.Event) -> None:
            other.append(stream, NewEvent(type="Other", data={"stream": stream}))
            done.set()

        to_b = threading.Thread(target=append_to, args=("acct-b", other_stream_done))
        to_a = threading.Thread(target=append_to, args=("acct-a", same_stream_done))
        to_b.start()
        # Another stream's writer commits while this transaction is still open ...
        assert other_stream_done.wait(10), "a writer of another stream waited for this transaction"
        to_a.start()
        # ... but this stream's next writer waits for it,
        time.sleep(0.3)
        assert not same_stream_done.is_set(), "two writers of one stream ran at the same time"
        # and readers stop below this transaction: the committed acct-b event (a later position) waits.
        assert other.read_all() == []
        assert other.head_position() == 0
        assert other.read_stream("acct-b")[0].type == "Other"  # a stream read is not held back
    to_a.join(10)
    to_b.join(10)
    assert same_stream_done.is_set()
    log = other.read_all()
    assert [(e.stream, e.type) for e in log] == [("acct-a", "Held"), ("acct-b", "Other"), ("acct-a", "Other")]
    assert log[0].global_position == held.global_positions[0]
    assert [e.stream_version for e in other.read_stream("acct-a")] == [0, 1]


def test_other_programs_transactions_do_not_hold_readers_back(
    pg_url: str, stores: tuple[EventStore, EventStore]
) -> None:
    store, _ = stores
    from tests.postgres_support import drop_schemas, new_schema_name, store_url

    base = pg_url.split("?")[0]
    other_schema = new_schema_name()
    elsewhere = open_store(store_url(base, other_schema))
    try:
        with psycopg.connect(base, autocommit=True) as foreign, elsewhere.transaction() as other_uow:
            # A transaction of another program holds an id and stays open ...
            foreign.execute("BEGIN")
            foreign.execute("SELECT pg_current_xact_id()")
            # ... and so does a chronik writer of another schema.
            other_uow.append("x-1", NewEvent(type="Elsewhere", data={}))
            result = store.append("s-1", NewEvent(type="A", data={}))
            assert [e.global_position for e in store.read_all()] == list(result.global_positions)
            assert store.head_position() == result.global_positions[0]
            # Read-your-writes at once, not only after the next periodic look at the lock table.
            again = store.append("s-1", NewEvent(type="B", data={}))
            assert [e.type for e in store.read_all()] == ["A", "B"]
            assert store.head_position() == again.global_positions[0]
            foreign.execute("ROLLBACK")
    finally:
        elsewhere.close()
        drop_schemas(base, [other_schema])
