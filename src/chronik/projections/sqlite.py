"""The projections' (and seals') dialect for SQLite, beside the PostgreSQL one in `postgres.py`.

Only what differs from the shared statements in `dialect.py`'s `Dialect` base lives here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar

from chronik.events.envelope import format_timestamp
from chronik.projections.dialect import ChainRow, Dialect, SQLConnection
from chronik.store.contract import EventStore, UnitOfWork


class SQLiteDialect(Dialect):
    """SQLite: the unit of work's connection is inside `BEGIN IMMEDIATE`, so it holds the write lock.

    That one fact gives most guarantees here: a batch's table writes, its checkpoint update and a
    swap are made by the only writer of the whole database, and commit together or not at all.
    """

    positions_in_commit_order: ClassVar[bool] = True  # positions are head + 1 under the write lock

    # INTEGER is SQLite's 64-bit integer; WITHOUT ROWID: the registry is looked up by its name.
    COLUMN_TYPES: ClassVar[dict[str, str]] = {"text": "TEXT", "integer": "INTEGER", "bigint": "INTEGER"}
    SQL_CREATE_REGISTRY: ClassVar[str] = Dialect.CREATE_REGISTRY.format(**COLUMN_TYPES) + " WITHOUT ROWID"
    # The unit of work holds the write lock already: reading the row is locking it.
    SQL_LOCK_REGISTRY: ClassVar[str] = Dialect.SQL_REGISTRY_ROW
    SQL_ADVANCE_INLINE: ClassVar[str] = (
        "UPDATE projections SET position = max(position, ?), updated_at = ? "
        "WHERE name = ? AND live_version = ?"
    )
    SQL_TABLES_LIKE: ClassVar[str] = (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\' ORDER BY name"
    )
    SQL_CREATE_SEALS: ClassVar[str] = Dialect.CREATE_SEALS.format(**COLUMN_TYPES)
    SQL_ADD_SEAL_SIGNATURE: ClassVar[str] = Dialect.ADD_SEAL_SIGNATURE.format(**COLUMN_TYPES)
    # Exactly the stored text the hash was computed over (events/chain.py), in global order ...
    CHAIN_COLUMNS: ClassVar[str] = (
        "SELECT global_position, event_id, stream_name, stream_version, event_type, schema_version, "
        "recorded_at, occurred_at, metadata, data, event_hash FROM events "
    )
    SQL_CHAIN_ROWS: ClassVar[str] = (
        CHAIN_COLUMNS + "WHERE global_position >= ? AND global_position <= ? ORDER BY global_position LIMIT ?"
    )
    # ... and one stream's, in version order (the unique index on stream and version).
    SQL_STREAM_CHAIN_ROWS: ClassVar[str] = (
        CHAIN_COLUMNS + "WHERE stream_name = ? AND stream_version >= ? AND stream_version <= ? "
        "ORDER BY stream_version LIMIT ?"
    )

    def write_connection(self, uow: UnitOfWork) -> sqlite3.Connection:
        connection: sqlite3.Connection = uow.connection  # type: ignore[attr-defined]
        return connection

    def batched_writes(self, connection: SQLConnection) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # in-process: a statement costs no round trip

    def is_unavailable(self, error: BaseException) -> bool:
        # sqlite3 raises OperationalError for a busy database and for a bad statement alike.
        return isinstance(error, sqlite3.OperationalError) and any(
            word in str(error) for word in ("database is locked", "database is busy")
        )

    def read_connection(self, store: EventStore) -> sqlite3.Connection:
        """This thread's connection, outside any transaction: each statement reads the latest commit."""
        connection: sqlite3.Connection = store.connection()  # type: ignore[attr-defined]
        return connection

    @contextlib.contextmanager
    def read_snapshot(self, store: EventStore) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement in it sees one snapshot (WAL), whatever commits meanwhile.

        Queries look up the live version and read its tables in one snapshot, so a swap that
        commits in between (and drops the old tables) cannot pull a table from under them.
        """
        connection = self.read_connection(store)
        if connection.in_transaction:  # already inside a unit of work on this thread: reuse it
            yield connection
            return
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    def _rows_if_table(
        self, connection: SQLConnection, table: str, statement: str, parameters: Sequence[Any] = ()
    ) -> list[Any] | None:
        try:
            rows: list[Any] = connection.execute(statement, parameters).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return None
            raise
        return rows

    def _time_parameter(self, moment: datetime) -> Any:
        return format_timestamp(moment)  # stored as text that sorts in time order

    def final_head(self, store: EventStore, connection: SQLConnection) -> int | None:
        return self.head_position(connection)  # under the write lock nothing else can commit

    def read_events(
        self, store: EventStore, connection: SQLConnection, first: int, last: int, event_types: Sequence[str]
    ) -> list[Any]:
        return store.read_all(first, to_position=last, event_types=event_types)  # this thread's connection

    def columns(self, connection: SQLConnection, table: str) -> list[tuple[str, int]]:
        rows = connection.execute(
            "SELECT name, pk FROM pragma_table_info(?) ORDER BY cid", (table,)
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def table_vanished(self, error: Exception) -> bool:
        # Never expected: a read snapshot (WAL) keeps the tables it started with.
        return isinstance(error, sqlite3.OperationalError) and "no such table" in str(error)

    def _chain_rows(
        self, connection: SQLConnection, statement: str, parameters: Sequence[Any]
    ) -> list[ChainRow]:
        rows: list[ChainRow] = connection.execute(statement, parameters).fetchall()
        return rows
