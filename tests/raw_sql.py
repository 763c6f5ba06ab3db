"""Reaching the database behind the store's back, as an operator (or an attacker) would.

Tests corrupt read-model rows and events with these, then expect chronik to name the damage. They
open their own connection (a SQLite file connection, or a psycopg connection in the store's schema),
never the store's, so nothing the store caches or holds can hide the change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg

from chronik.projections import dialect_for
from chronik.store import EventStore


def execute_behind_the_store(store: EventStore, statement: str, parameters: Sequence[Any] = ()) -> int:
    """Run one statement (`?` placeholders) in its own committed transaction; returns its rowcount
    (for a SELECT on PostgreSQL, the rows found). On PostgreSQL every `?` becomes `%s`: keep `?`
    and `%` out of the statement's literals."""
    if store.url.startswith("sqlite"):
        raw = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        try:
            with raw:
                return raw.execute(statement, parameters).rowcount
        finally:
            raw.close()
    with psycopg.connect(
        store.conninfo,  # type: ignore[attr-defined]
        autocommit=True,
        options=f"-c search_path={store.schema}",  # type: ignore[attr-defined]
    ) as connection:
        return connection.execute(statement.replace("?", "%s"), parameters).rowcount  # type: ignore[arg-type]


def table_names(store: EventStore) -> list[str]:
    """Every table in the store's database (SQLite) or schema (PostgreSQL), through the dialect's catalog."""
    dialect = dialect_for(store)
    with dialect.read_snapshot(store) as connection:
        return dialect.tables_with_prefix(connection, "")


def log_positions(store: EventStore) -> list[int]:
    """The global positions of the whole log, in order: on PostgreSQL they are not 1, 2, 3, ..."""
    return [event.global_position for event in store.read_all()]


def tamper(store: EventStore, statement: str, *parameters: object) -> None:
    """`execute_behind_the_store`, which must change something (a tampering that misses is a test bug)."""
    assert execute_behind_the_store(store, statement, parameters) >= 1, "the tampering changed nothing"


def swap_positions(store: EventStore, a: int, b: int) -> None:
    """Exchange the global positions of two rows (their order in the log), nothing else: no hash is
    recomputed, so each event's text and chain link are what the store wrote."""
    tamper(store, "UPDATE events SET global_position = -1 WHERE global_position = ?", a)
    tamper(store, "UPDATE events SET global_position = ? WHERE global_position = ?", a, b)
    tamper(store, "UPDATE events SET global_position = ? WHERE global_position = -1", b)
