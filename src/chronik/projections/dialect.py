"""Everything database-specific the projection and audit layers need, behind one small interface.

The rest of `chronik.projections` and `chronik.audit` speaks only to a `Dialect`: how to get the
SQL connection inside a unit of work, how to open a consistent read snapshot, chronik's own tables
(the projection registry, the seals) and a little introspection. SQLite is implemented here; the
PostgreSQL backend joins by implementing the same methods and calling `register_dialect`.

Projection authors write the SQL of their own handlers for their database (placeholders included).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import msgspec

from chronik.events.envelope import format_timestamp
from chronik.projections.errors import InvalidProjection, UnsupportedStore
from chronik.store.contract import EventStore, UnitOfWork


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SQLConnection(Protocol):
    """The part of a DB-API connection projections use (sqlite3 and psycopg both have it)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


_IDENTIFIER: Final = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_IDENTIFIER_PART: Final = 40


def check_identifier(value: object, what: str) -> str:
    """Projection, table and scratch names become parts of SQL identifiers: only `[a-z0-9_]`, no `__`.

    Physical table names are `<projection>__<table>__<slot>`, so a part must not itself contain
    a double underscore (that would let two different triples name the same table) and must be
    short enough that the whole stays under every database's identifier limit (PostgreSQL: 63).
    Anything else is refused before it can reach SQL text: this check is the injection guard.
    """
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value) or len(value) > MAX_IDENTIFIER_PART:
        raise InvalidProjection(
            f"invalid {what} {value!r}: use lower-case letters, digits and single underscores, "
            f"starting with a letter, at most {MAX_IDENTIFIER_PART} characters"
        )
    return value


class RegistryRow(msgspec.Struct, frozen=True):
    """One projection's row in the registry table `projections`."""

    name: str
    live_version: int  # N of the live table set <name>__<table>__vN
    code_version: int  # Projection.version of the code that built the live set
    position: int  # the checkpoint: every event up to here is in the live tables
    building_version: int | None  # a rebuild in progress: its table set ...
    building_code_version: int | None  # ... the code version building it ...
    building_position: int | None  # ... and how far it got
    updated_at: str
    side_effects_after: int  # the log's head when the projection was registered: older events are history


class SealRow(msgspec.Struct, frozen=True):
    """One seal: the event hashes of positions `from_position..to_position`, folded in global order."""

    seal_no: int
    from_position: int
    to_position: int
    event_count: int
    previous_seal_hash: str
    seal_hash: str
    sealed_at: str


ChainRow = tuple[int, str, str, int, str, int, str, str, str, str, str]
"""(global_position, event_id, stream, version, type, schema_version, recorded_at, occurred_at,
json_metadata, json_data, event_hash): an event as stored, exactly what its hash covers."""


class Dialect(Protocol):
    """What a database must offer projections and seals. SQLite below; PostgreSQL in `postgres.py`."""

    # True when positions are assigned in commit order (SQLite's one writer): an inline checkpoint
    # then means "every event up to here". False on PostgreSQL: see `projections/postgres.py`.
    @property
    def positions_in_commit_order(self) -> bool: ...

    def statement(self, sql: str) -> str:
        """Handler SQL, written with `?` placeholders, in the driver's own placeholder style."""
        ...

    def write_connection(self, uow: UnitOfWork) -> SQLConnection: ...
    def batched_writes(self, connection: SQLConnection) -> contextlib.AbstractContextManager[None]:
        """Around a batch of handler statements: lets a client/server database send them without
        waiting for each result (PostgreSQL's pipeline mode); errors surface by the block's end."""
        ...

    def read_connection(self, store: EventStore) -> SQLConnection: ...
    def read_snapshot(self, store: EventStore) -> contextlib.AbstractContextManager[SQLConnection]: ...
    def ensure_registry(self, connection: SQLConnection) -> None: ...
    def registry_row(self, connection: SQLConnection, name: str) -> RegistryRow | None: ...
    def registry_rows(self, connection: SQLConnection) -> list[RegistryRow]: ...
    def lock_registry_row(self, connection: SQLConnection, name: str) -> RegistryRow | None:
        """The row, locked until the transaction ends (inline hooks and the swap take turns)."""
        ...

    def advance_inline(self, connection: SQLConnection, name: str, live_version: int, last: int) -> bool:
        """Under `lock_registry_row`: the checkpoint becomes max(checkpoint, last)."""
        ...

    def final_head(self, store: EventStore, connection: SQLConnection) -> int | None:
        """Under `lock_registry_row`: the head a rebuild may swap at, or None to try again shortly."""
        ...

    def read_events(
        self, store: EventStore, connection: SQLConnection, first: int, last: int, event_types: Sequence[str]
    ) -> list[Any]:
        """Events in [first, last] of these types as `connection`'s transaction sees them."""
        ...

    def insert_registry_row(self, connection: SQLConnection, name: str, code_version: int) -> None: ...
    def advance(
        self, connection: SQLConnection, name: str, live_version: int, old: int, new: int
    ) -> bool: ...
    def start_building(
        self, connection: SQLConnection, name: str, version: int, code_version: int
    ) -> None: ...
    def advance_building(
        self, connection: SQLConnection, name: str, version: int, old: int, new: int
    ) -> bool: ...
    def swap(self, connection: SQLConnection, name: str, version: int, old: int, new: int) -> bool: ...
    def tables_with_prefix(self, connection: SQLConnection, prefix: str) -> list[str]: ...
    def columns(self, connection: SQLConnection, table: str) -> list[tuple[str, int]]: ...
    def drop_table(self, connection: SQLConnection, table: str) -> None: ...
    def head_position(self, connection: SQLConnection) -> int: ...
    def count_events(
        self,
        connection: SQLConnection,
        after: int,
        up_to: int,
        event_types: Sequence[str] | None = None,
        recorded_until: datetime | None = None,
    ) -> int:
        """How many events lie in (after, up_to]: progress bars and lag count events, not positions
        (PostgreSQL's positions are sparse, so `up_to - after` says nothing about the work left)."""
        ...

    def table_vanished(self, error: Exception) -> bool:
        """True when `error` says a table was dropped under a statement (a swap): worth one more try."""
        ...

    # -- seals (chronik.audit) --
    def ensure_seals(self, connection: SQLConnection) -> None: ...
    def seals(self, connection: SQLConnection) -> list[SealRow]: ...
    def insert_seal(self, connection: SQLConnection, seal: SealRow) -> None: ...
    def chain_rows(
        self, connection: SQLConnection, from_position: int, to_position: int, limit: int
    ) -> list[ChainRow]: ...
    def stored_event_hash(self, connection: SQLConnection, stream: str, version: int) -> str | None: ...


class SQLiteDialect:
    """SQLite: the unit of work's connection is inside `BEGIN IMMEDIATE`, so it holds the write lock.

    That one fact gives most guarantees here: a batch's table writes, its checkpoint update and a
    swap are made by the only writer of the whole database, and commit together or not at all.
    """

    positions_in_commit_order: Final = True  # positions are head + 1 under the write lock

    SQL_CREATE_REGISTRY: Final = """CREATE TABLE IF NOT EXISTS projections (
        name                  TEXT    PRIMARY KEY,
        live_version          INTEGER NOT NULL,  -- the live table set is <name>__<table>__v<live_version>
        code_version          INTEGER NOT NULL,  -- Projection.version that built the live set
        position              INTEGER NOT NULL,  -- checkpoint: committed with the table writes it covers
        building_version      INTEGER,           -- a rebuild in progress (NULL: none)
        building_code_version INTEGER,
        building_position     INTEGER,
        updated_at            TEXT    NOT NULL,
        side_effects_after    INTEGER NOT NULL   -- side effects only for events after this position
    ) WITHOUT ROWID"""
    SQL_REGISTRY_COLUMNS: Final = (
        "name, live_version, code_version, position, building_version, building_code_version, "
        "building_position, updated_at, side_effects_after"
    )
    # A new projection starts at position 0 with an empty table set v1. Its side effects start
    # after the head of the log at registration: the first catch-up replays history, which must
    # not send an e-mail for every past event either.
    SQL_INSERT_REGISTRY: Final = (
        "INSERT INTO projections "
        "(name, live_version, code_version, position, updated_at, side_effects_after) "
        "VALUES (?, 1, ?, 0, ?, (SELECT coalesce(max(global_position), 0) FROM events)) "
        "ON CONFLICT (name) DO NOTHING"
    )
    # Every update names the state it expects (live version and position): an update from a
    # worker whose view is out of date changes no row, and the caller rolls back its batch.
    # This is what makes each event apply exactly once even with two runners of one projection.
    SQL_ADVANCE: Final = (
        "UPDATE projections SET position = ?, updated_at = ? "
        "WHERE name = ? AND live_version = ? AND position = ?"
    )
    SQL_START_BUILDING: Final = (
        "UPDATE projections SET building_version = ?, building_code_version = ?, building_position = 0, "
        "updated_at = ? WHERE name = ?"
    )
    SQL_ADVANCE_BUILDING: Final = (
        "UPDATE projections SET building_position = ?, updated_at = ? "
        "WHERE name = ? AND building_version = ? AND building_position = ?"
    )
    # The swap: one row update, in the transaction that applied the rebuild's last batch.
    SQL_SWAP: Final = (
        "UPDATE projections SET live_version = building_version, code_version = building_code_version, "
        "position = ?, building_version = NULL, building_code_version = NULL, building_position = NULL, "
        "updated_at = ? WHERE name = ? AND building_version = ? AND building_position = ?"
    )

    SQL_CREATE_SEALS: Final = """CREATE TABLE IF NOT EXISTS seals (
        seal_no            INTEGER PRIMARY KEY,  -- 1, 2, 3, ...: a second sealer of the same range fails here
        from_position      INTEGER NOT NULL,     -- ranges are contiguous: from = previous seal's to + 1
        to_position        INTEGER NOT NULL,
        event_count        INTEGER NOT NULL,
        previous_seal_hash TEXT    NOT NULL,     -- chains the seals: editing one breaks every later one
        seal_hash          TEXT    NOT NULL,
        sealed_at          TEXT    NOT NULL
    )"""
    SQL_SEALS: Final = (
        "SELECT seal_no, from_position, to_position, event_count, previous_seal_hash, seal_hash, sealed_at "
        "FROM seals ORDER BY seal_no"
    )
    SQL_INSERT_SEAL: Final = (
        "INSERT INTO seals (seal_no, from_position, to_position, event_count, previous_seal_hash, "
        "seal_hash, sealed_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    # Exactly the stored text the hash was computed over (events/chain.py), in global order.
    SQL_CHAIN_ROWS: Final = (
        "SELECT global_position, event_id, stream_name, stream_version, event_type, schema_version, "
        "recorded_at, occurred_at, metadata, data, event_hash FROM events "
        "WHERE global_position >= ? AND global_position <= ? ORDER BY global_position LIMIT ?"
    )
    SQL_EVENT_HASH_AT: Final = "SELECT event_hash FROM events WHERE stream_name = ? AND stream_version = ?"

    def statement(self, sql: str) -> str:
        return sql  # sqlite3 takes `?` as it is

    def write_connection(self, uow: UnitOfWork) -> sqlite3.Connection:
        connection: sqlite3.Connection = uow.connection  # type: ignore[attr-defined]
        return connection

    def batched_writes(self, connection: SQLConnection) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # in-process: a statement costs no round trip

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

    def ensure_registry(self, connection: SQLConnection) -> None:
        connection.execute(self.SQL_CREATE_REGISTRY)

    def _row(self, row: Any) -> RegistryRow:
        return RegistryRow(*row)

    def registry_row(self, connection: SQLConnection, name: str) -> RegistryRow | None:
        try:
            row = connection.execute(
                f"SELECT {self.SQL_REGISTRY_COLUMNS} FROM projections WHERE name = ?", (name,)
            ).fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return None
            raise
        return None if row is None else self._row(row)

    def registry_rows(self, connection: SQLConnection) -> list[RegistryRow]:
        try:
            rows = connection.execute(
                f"SELECT {self.SQL_REGISTRY_COLUMNS} FROM projections ORDER BY name"
            ).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise
        return [self._row(row) for row in rows]

    def insert_registry_row(self, connection: SQLConnection, name: str, code_version: int) -> None:
        connection.execute(self.SQL_INSERT_REGISTRY, (name, code_version, _now()))

    def lock_registry_row(self, connection: SQLConnection, name: str) -> RegistryRow | None:
        return self.registry_row(connection, name)  # the unit of work holds the write lock already

    def advance_inline(self, connection: SQLConnection, name: str, live_version: int, last: int) -> bool:
        cursor = connection.execute(
            "UPDATE projections SET position = max(position, ?), updated_at = ? "
            "WHERE name = ? AND live_version = ?",
            (last, _now(), name, live_version),
        )
        return bool(cursor.rowcount == 1)

    def final_head(self, store: EventStore, connection: SQLConnection) -> int | None:
        return self.head_position(connection)  # under the write lock nothing else can commit

    def read_events(
        self, store: EventStore, connection: SQLConnection, first: int, last: int, event_types: Sequence[str]
    ) -> list[Any]:
        return store.read_all(first, to_position=last, event_types=event_types)  # this thread's connection

    def advance(self, connection: SQLConnection, name: str, live_version: int, old: int, new: int) -> bool:
        cursor = connection.execute(self.SQL_ADVANCE, (new, _now(), name, live_version, old))
        return bool(cursor.rowcount == 1)

    def start_building(self, connection: SQLConnection, name: str, version: int, code_version: int) -> None:
        connection.execute(self.SQL_START_BUILDING, (version, code_version, _now(), name))

    def advance_building(
        self, connection: SQLConnection, name: str, version: int, old: int, new: int
    ) -> bool:
        cursor = connection.execute(self.SQL_ADVANCE_BUILDING, (new, _now(), name, version, old))
        return bool(cursor.rowcount == 1)

    def swap(self, connection: SQLConnection, name: str, version: int, old: int, new: int) -> bool:
        cursor = connection.execute(self.SQL_SWAP, (new, _now(), name, version, old))
        return bool(cursor.rowcount == 1)

    def tables_with_prefix(self, connection: SQLConnection, prefix: str) -> list[str]:
        # `prefix` is built from checked identifiers; LIKE's `_` wildcard is escaped anyway.
        pattern = prefix.replace("_", "\\_") + "%"
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\' ORDER BY name",
            (pattern,),
        ).fetchall()
        return [row[0] for row in rows]

    def columns(self, connection: SQLConnection, table: str) -> list[tuple[str, int]]:
        """(column name, position in the primary key: 0 when not part of it), in table order."""
        rows = connection.execute(
            "SELECT name, pk FROM pragma_table_info(?) ORDER BY cid", (table,)
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def drop_table(self, connection: SQLConnection, table: str) -> None:
        connection.execute(f'DROP TABLE IF EXISTS "{table}"')

    def head_position(self, connection: SQLConnection) -> int:
        row = connection.execute("SELECT max(global_position) FROM events").fetchone()
        return int(row[0] or 0)

    def count_events(
        self,
        connection: SQLConnection,
        after: int,
        up_to: int,
        event_types: Sequence[str] | None = None,
        recorded_until: datetime | None = None,
    ) -> int:
        clauses = ["global_position > ?", "global_position <= ?"]
        parameters: list[Any] = [after, up_to]
        if event_types is not None:
            clauses.append(f"event_type IN ({', '.join('?' * len(event_types))})")
            parameters.extend(event_types)
        if recorded_until is not None:
            clauses.append("recorded_at <= ?")
            parameters.append(format_timestamp(recorded_until))
        row = connection.execute(
            f"SELECT count(*) FROM events WHERE {' AND '.join(clauses)}", parameters
        ).fetchone()
        return int(row[0])

    def table_vanished(self, error: Exception) -> bool:
        # Never expected: a read snapshot (WAL) keeps the tables it started with.
        return isinstance(error, sqlite3.OperationalError) and "no such table" in str(error)

    def ensure_seals(self, connection: SQLConnection) -> None:
        connection.execute(self.SQL_CREATE_SEALS)

    def seals(self, connection: SQLConnection) -> list[SealRow]:
        try:
            rows = connection.execute(self.SQL_SEALS).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise
        return [SealRow(*row) for row in rows]

    def insert_seal(self, connection: SQLConnection, seal: SealRow) -> None:
        # SealRow's fields are in the INSERT's column order.
        connection.execute(self.SQL_INSERT_SEAL, msgspec.structs.astuple(seal))

    def chain_rows(
        self, connection: SQLConnection, from_position: int, to_position: int, limit: int
    ) -> list[ChainRow]:
        rows: list[ChainRow] = connection.execute(
            self.SQL_CHAIN_ROWS, (from_position, to_position, limit)
        ).fetchall()
        return rows

    def stored_event_hash(self, connection: SQLConnection, stream: str, version: int) -> str | None:
        row = connection.execute(self.SQL_EVENT_HASH_AT, (stream, version)).fetchone()
        return None if row is None else str(row[0])


def _now() -> str:
    from chronik.clock import system_clock

    return format_timestamp(system_clock())


_DIALECTS: list[tuple[type[EventStore], Dialect]] = []


def register_dialect(store_type: type[EventStore], dialect: Dialect) -> None:
    """Let projections and seals run on another backend (the PostgreSQL backend calls this)."""
    _DIALECTS.insert(0, (store_type, dialect))


def dialect_for(store: EventStore) -> Dialect:
    for store_type, dialect in _DIALECTS:
        if isinstance(store, store_type):
            return dialect
    from chronik.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):  # registered at first use: it imports this module
        from chronik.projections.postgres import PostgresDialect

        register_dialect(PostgresStore, PostgresDialect())
        return dialect_for(store)
    raise UnsupportedStore(store)


def _register_builtin() -> None:
    from chronik.store.sqlite import SQLiteStore

    register_dialect(SQLiteStore, SQLiteDialect())


_register_builtin()
