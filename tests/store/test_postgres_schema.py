"""PostgreSQL specifics around the contract: schemas and migrations, the URL, the per-transaction
cap of the position scheme, and recorded_at across writers whose clocks disagree."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from chronik import NO_STREAM, InvalidInput, ManualClock, NewEvent, WrongExpectedVersion, open_store
from chronik.errors import SchemaTooNew, UnsupportedStoreURL
from chronik.store import postgres_sql
from chronik.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def migrations(store: PostgresStore) -> list[int]:
    with psycopg.connect(store.conninfo) as connection:
        rows = connection.execute(
            sql.SQL("SELECT version FROM {}.schema_migrations ORDER BY version").format(
                sql.Identifier(store.schema)
            )
        ).fetchall()
    return [row[0] for row in rows]


def test_schema_is_created_once_and_reopening_keeps_the_data(pg_url: str, store: PostgresStore) -> None:
    store.append("s-1", NewEvent(type="A", data={}))
    assert migrations(store) == list(range(1, postgres_sql.SCHEMA_VERSION + 1))
    again = open_store(pg_url)
    try:
        assert again.stream_version("s-1") == 0
    finally:
        again.close()
    assert migrations(store) == list(range(1, postgres_sql.SCHEMA_VERSION + 1))


def test_concurrent_opens_of_a_fresh_schema_migrate_it_once(pg_url: str) -> None:
    errors: list[BaseException] = []
    opened: list[PostgresStore] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            store = open_store(pg_url)
            assert isinstance(store, PostgresStore)
            with lock:
                opened.append(store)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert migrations(opened[0]) == list(range(1, postgres_sql.SCHEMA_VERSION + 1))
    finally:
        for store in opened:
            store.close()


def test_a_newer_schema_than_the_code_knows_is_refused(pg_url: str, store: PostgresStore) -> None:
    with psycopg.connect(store.conninfo, autocommit=True) as connection:
        connection.execute(
            sql.SQL("INSERT INTO {}.schema_migrations VALUES (%s, now())").format(
                sql.Identifier(store.schema)
            ),
            (postgres_sql.SCHEMA_VERSION + 1,),
        )
    with pytest.raises(SchemaTooNew) as caught:
        open_store(pg_url)
    assert (caught.value.found, caught.value.supported) == (
        postgres_sql.SCHEMA_VERSION + 1,
        postgres_sql.SCHEMA_VERSION,
    )


@pytest.mark.parametrize("schema", ["Upper", "has-dash", "1starts_with_digit", "x" * 64, "a;drop"])
def test_bad_schema_names_are_refused(pg_url: str, schema: str) -> None:
    base = pg_url.split("?")[0]
    with pytest.raises(UnsupportedStoreURL):
        open_store(f"{base}?schema={schema}")


def test_url_options_reach_the_store(pg_url: str) -> None:
    opened = open_store(pg_url + "&pool_max_size=3&max_event_bytes=2048&connect_timeout=5")
    try:
        assert isinstance(opened, PostgresStore)
        assert opened.max_event_bytes == 2048
        assert "pool_max_size" not in opened.conninfo and "max_event_bytes" not in opened.conninfo
        assert "connect_timeout=5" in opened.conninfo  # libpq's own parameters pass through
        opened.append("s-1", NewEvent(type="A", data={}))
    finally:
        opened.close()


def test_a_transaction_over_the_position_cap_is_refused_before_writing(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_sql, "MAX_EVENTS_PER_TRANSACTION", 3)
    with pytest.raises(InvalidInput, match="at most 3 events"), store.transaction() as uow:
        uow.append("s-1", [NewEvent(type="A", data={}), NewEvent(type="A", data={})])
        uow.append("s-2", [NewEvent(type="A", data={}), NewEvent(type="A", data={})])
    assert store.head_position() == 0
    assert store.stream_version("s-1") is None


def test_positions_of_one_transaction_share_its_id_and_count_up(store: PostgresStore) -> None:
    with store.transaction() as uow:
        first = uow.append("s-1", [NewEvent(type="A", data={}), NewEvent(type="A", data={})])
        second = uow.append("s-2", NewEvent(type="A", data={}))
    positions = [*first.global_positions, *second.global_positions]
    base = positions[0] >> postgres_sql.POSITION_SHIFT << postgres_sql.POSITION_SHIFT
    assert positions == [base, base + 1, base + 2]
    assert [e.global_position for e in store.read_all()] == positions


def test_recorded_at_never_decreases_across_writers_with_disagreeing_clocks(pg_url: str) -> None:
    """Two processes' clocks an hour apart: the store keeps recorded_at in global order anyway."""
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    ahead = open_store(pg_url, clock=ManualClock(now))
    behind = open_store(pg_url, clock=ManualClock(now - timedelta(hours=1)))
    try:
        ahead.append("s-1", NewEvent(type="A", data={}))
        behind.append("s-2", NewEvent(type="B", data={}))
        first, second = ahead.read_all()
        assert (first.type, second.type) == ("A", "B")
        assert second.recorded_at >= first.recorded_at == now
        # ... and occurred_at defaults to the (raised) recorded time, as everywhere.
        assert second.occurred_at == second.recorded_at
    finally:
        ahead.close()
        behind.close()


def test_prepared_statements_survive_a_rollback(store: PostgresStore) -> None:
    """psycopg's own statement cache answers a ROLLBACK with DEALLOCATE ALL; the store's prepared
    append statements must outlive it."""
    store.append("s-1", NewEvent(type="A", data={}))
    for round_number in range(10):
        for _ in range(6):  # often enough for psycopg to prepare the query, if it were allowed to
            store.stream_version("s-1")
        with pytest.raises(WrongExpectedVersion), store.transaction() as uow:
            uow.append("s-1", NewEvent(type="A", data={}), NO_STREAM)
        store.append("s-1", NewEvent(type="A", data={}))
        assert store.stream_version("s-1") == round_number + 1
