"""`?lock_timeout=SECONDS` on a PostgreSQL URL: a writer behind another connection's lock gives up with
a clear, retryable error and writes nothing; without the option it waits (PostgreSQL's default)."""

from __future__ import annotations

import time

import psycopg
import pytest

from chronik import NO_STREAM, NewEvent, StoreUnavailable, open_store
from chronik.errors import UnsupportedStoreURL
from chronik.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def test_a_writer_behind_a_table_lock_gives_up_after_lock_timeout_and_writes_nothing(pg_url: str) -> None:
    store = open_store(pg_url + "&lock_timeout=0.3")
    assert isinstance(store, PostgresStore)
    try:
        with store.pooled_connection() as connection:
            assert connection.execute("SHOW lock_timeout").fetchone() == ("300ms",)
        with psycopg.connect(store.conninfo, autocommit=True) as other:
            other.execute("BEGIN")
            other.execute(f"LOCK TABLE {store.schema}.events IN EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="lock timeout") as refused:
                store.append("order-1", [NewEvent(type="Placed", data={})], NO_STREAM)
            waited = time.monotonic() - started
            assert refused.value.retryable
            assert 0.25 <= waited < 5, waited
            other.execute("ROLLBACK")
        assert store.stream_version("order-1") is None  # nothing of the refused append was kept
        store.append("order-1", [NewEvent(type="Placed", data={})], NO_STREAM)  # the retry succeeds
        assert store.stream_version("order-1") == 0
    finally:
        store.close()


def test_without_the_option_the_store_keeps_postgresqls_default(pg_url: str) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    try:
        with store.pooled_connection() as connection:
            assert connection.execute("SHOW lock_timeout").fetchone() == ("0",)
    finally:
        store.close()


def test_a_tiny_lock_timeout_is_one_millisecond_not_forever(pg_url: str) -> None:
    """Rounded to whole milliseconds, 0.0001 s would be 0, which PostgreSQL reads as no timeout."""
    store = open_store(pg_url + "&lock_timeout=0.0001")
    try:
        with store.pooled_connection() as connection:  # type: ignore[attr-defined]
            assert connection.execute("SHOW lock_timeout").fetchone() == ("1ms",)
    finally:
        store.close()


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "1e12"])
def test_a_bad_lock_timeout_is_refused_with_its_name(pg_url: str, value: str) -> None:
    with pytest.raises(UnsupportedStoreURL, match="lock_timeout"):
        open_store(pg_url + f"&lock_timeout={value}")
