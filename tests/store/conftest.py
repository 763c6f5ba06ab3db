"""Fixtures for backend-specific store tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import service_url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A store URL with a fresh schema of its own (created on first open, dropped afterwards)."""
    from tests.postgres_support import drop_schemas, new_schema_name, store_url

    base = service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")
    schema = new_schema_name()
    yield store_url(base, schema)
    drop_schemas(base, [schema])
