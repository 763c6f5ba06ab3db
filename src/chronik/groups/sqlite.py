"""Consumer groups on SQLite: what differs from PostgreSQL beneath the shared SQL coordinator.

Every method that changes rows runs in a unit of work (`BEGIN IMMEDIATE`), which holds SQLite's
single write lock. That lock is what makes the protocol safe across processes: a claim (which
raises the epoch) and a member's fenced commit can never interleave, so the `WHERE owner = ? AND
epoch = ?` of the commit sees either the old grant or the new one, never half of each. The
statements and the logic are in `groups/sql.py`; here are the DDL, the connections and the times
(ISO text, as the store keeps them). The tables carry their own schema version
(`group_schema_migrations`), so groups evolve apart from the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final

from chronik.events.envelope import format_timestamp, parse_timestamp
from chronik.groups.sql import SQLCoordinator
from chronik.store import UnitOfWork
from chronik.store.sqlite import SQLiteStore, SQLiteUnitOfWork

GROUP_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS consumer_groups (
            group_name   TEXT PRIMARY KEY,
            partitions   INTEGER NOT NULL,
            categories   TEXT NOT NULL,   -- JSON array; empty: every category
            event_types  TEXT NOT NULL,   -- JSON array; empty: every type
            created_at   TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS group_members (
            group_name            TEXT NOT NULL,
            member_id             TEXT NOT NULL,
            joined_at             TEXT NOT NULL,
            heartbeat_expires_at  TEXT NOT NULL,  -- a row past this time is a dead member
            PRIMARY KEY (group_name, member_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS group_partitions (
            group_name        TEXT    NOT NULL,
            partition         INTEGER NOT NULL,
            owner             TEXT,               -- NULL: free
            epoch             INTEGER NOT NULL,   -- +1 at every grant; a commit must name the current one
            lease_expires_at  TEXT    NOT NULL,   -- '' (sorts first): never leased
            checkpoint        INTEGER NOT NULL,   -- last global position handled (or scanned past)
            PRIMARY KEY (group_name, partition)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS group_parked (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- parking order, never reused
            group_name       TEXT    NOT NULL,
            partition        INTEGER NOT NULL,
            stream_name      TEXT    NOT NULL,
            global_position  INTEGER NOT NULL,
            event_id         TEXT    NOT NULL,
            blocked_by       INTEGER,          -- NULL: failed itself; else waits behind that id
            error            TEXT    NOT NULL,
            attempts         INTEGER NOT NULL,
            parked_at        TEXT    NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS group_parked_stream "
        "ON group_parked (group_name, partition, stream_name, id)",
    ),
}


class SQLiteCoordinator(SQLCoordinator[sqlite3.Connection]):
    MIGRATIONS = GROUP_MIGRATIONS
    SQL_CREATE_MIGRATIONS = (
        "CREATE TABLE IF NOT EXISTS group_schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    LOCK_ROW = ""  # every coordination transaction already holds the database's write lock
    NEVER_LEASED = ""  # the column is NOT NULL; '' sorts before every ISO time

    store: SQLiteStore

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        super().__init__()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.store.transaction() as uow:  # BEGIN IMMEDIATE: the write lock, before any read
            yield uow.connection

    def _reading(self) -> contextlib.nullcontext[sqlite3.Connection]:
        return contextlib.nullcontext(self.store.connection())

    def _connection(self, uow: UnitOfWork) -> sqlite3.Connection:
        if not isinstance(uow, SQLiteUnitOfWork):
            raise TypeError("a SQLite coordinator needs a unit of work of the same SQLite store")
        return uow.connection

    def _execute(
        self, connection: sqlite3.Connection, sql: str, params: Sequence[object] = ()
    ) -> sqlite3.Cursor:
        return connection.execute(sql, params)

    def _execute_many(
        self, connection: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]
    ) -> None:
        connection.executemany(sql, rows)

    def _time(self, moment: datetime) -> str:
        return format_timestamp(moment)

    def _datetime(self, value: Any) -> datetime:
        return parse_timestamp(value)

    def _partition_in(self, partitions: Sequence[int]) -> tuple[str, list[object]]:
        return f"partition IN ({', '.join('?' * len(partitions))})", list(partitions)
