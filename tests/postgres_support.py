"""The PostgreSQL factory for the contract suite: every store it makes lives in a fresh schema.

Imported by `tests/conftest.py`, which then runs the whole contract suite against PostgreSQL with
the `postgres` marker. Schemas are named after the process and a counter and dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from chronik.clock import Clock
from chronik.store import EventStore, open_store
from tests.conftest import service_url

_counter = itertools.count()
# A hypothesis test makes a store per example; keep only this many of a test's stores open at once
# (the older ones are closed), so one test does not hold dozens of server connections.
MAX_OPEN_STORES = 8


def new_schema_name() -> str:
    return f"chronik_test_{os.getpid()}_{next(_counter)}"


def drop_schemas(url: str, schemas: list[str]) -> None:
    if not schemas:
        return
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET lock_timeout = '10s'")
        for schema in schemas:
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def store_url(base: str, schema: str, query: str = "") -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}schema={schema}{query}"


def postgres_factory(
    tmp_path: Path, request: pytest.FixtureRequest, opener: Callable[..., EventStore] = open_store
) -> Callable[..., EventStore]:
    base = service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")
    schemas: list[str] = []
    shared_schemas: list[str] = []
    open_stores: list[EventStore] = []
    request.addfinalizer(lambda: drop_schemas(base, schemas))

    def make(clock: Clock | None = None, *, shared: bool = False, query: str = "") -> EventStore:
        """`shared=True`: the same schema as the test's other shared stores (like SQLite's shared file)."""
        if shared and shared_schemas:
            schema = shared_schemas[0]
        else:
            schema = new_schema_name()
            schemas.append(schema)
            if shared:
                shared_schemas.append(schema)
        store = opener(store_url(base, schema, query), clock=clock)
        open_stores.append(store)
        while len(open_stores) > MAX_OPEN_STORES:
            open_stores.pop(0).close()
        return store

    return make
