"""Fixtures for backend-specific store tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import service_url

if TYPE_CHECKING:
    from chronik.store.postgres import PostgresStore


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A store URL with a fresh schema of its own (created on first open, dropped afterwards)."""
    from tests.postgres_support import drop_schemas, new_schema_name, store_url

    base = service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")
    schema = new_schema_name()
    yield store_url(base, schema)
    drop_schemas(base, [schema])


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    """A `PostgresStore` on `pg_url`'s fresh schema, closed afterwards. Every test in this folder is
    about PostgreSQL, so this replaces the root conftest's `store` (one per backend) here."""
    from chronik import open_store
    from chronik.store.postgres import PostgresStore

    opened = open_store(pg_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two store objects on one fresh schema: two pools of connections, like two processes."""
    from chronik import open_store
    from chronik.store.postgres import PostgresStore

    first, second = open_store(pg_url), open_store(pg_url)
    assert isinstance(first, PostgresStore) and isinstance(second, PostgresStore)
    yield first, second
    first.close()
    second.close()
