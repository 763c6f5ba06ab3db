"""Fixtures for the asyncio face's own tests: a store URL per backend, and asyncio for anyio's plugin.

The contract suite already runs on the aio face (`tests/contract/`, `[...-aio]`); these tests
cover what only asyncio shows: many tasks on one loop, async iterators, cancellation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty store of each backend (PostgreSQL: a fresh schema, dropped afterwards)."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'aio.db'}"
    else:
        from tests.postgres_support import drop_schemas, new_schema_name, store_url

        base = service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")
        schema = new_schema_name()
        yield store_url(base, schema)
        drop_schemas(base, [schema])
