"""Everything database-specific the projection and audit layers need, behind one small interface.

The rest of `chronik.projections` and `chronik.audit` speaks only to a `Dialect`: how to get the
SQL connection inside a unit of work, how to open a consistent read snapshot, chronik's own tables
(the projection registry, the seals) and a little introspection. The statements both databases
share live once, in the `Dialect` base class; each backend's differences are in its own module,
`sqlite.py` and `postgres.py` (registered with `register_dialect` at first use).

Projection authors write the SQL of their own handlers for their database (placeholders included).
"""

from __future__ import annotations

import abc
import contextlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Final, Protocol

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


class BatchFailed(Exception):
    """Raised by `Dialect.batched_writes` when a batch sent as a whole failed and the transaction
    was put back where the batch began: the statements cannot be tied to the event that issued the
    failing one, so `Projection.apply` runs the batch again one statement at a time to find it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


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
    # A hex Ed25519 signature over the fields above (`chronik.audit.signing`); None: unsigned.
    signature: str | None = None


ChainRow = tuple[int, str, str, int, str, int, str, str, str, str, str]
"""(global_position, event_id, stream, version, type, schema_version, recorded_at, occurred_at,
json_metadata, json_data, event_hash): an event as stored, exactly what its hash covers."""


class Dialect(abc.ABC):
    """What a database must offer projections and seals, and what SQLite and PostgreSQL share.

    The shared part is chronik's own tables and the statements that keep them, each written once
    with `?` placeholders; `sql()` turns one into the driver's style the first time it is used
    (`statement()`). Each dialect holds only what differs between the databases: connections and
    snapshots, column types, catalog queries, row locks, and the final step of a rebuild.
    SQLite below; PostgreSQL in `postgres.py`.
    """

    # Defined by each dialect.
    # True when positions are assigned in commit order (SQLite's one writer): an inline checkpoint
    # then means "every event up to here". False on PostgreSQL: see `projections/postgres.py`.
    positions_in_commit_order: ClassVar[bool]
    SQL_CREATE_REGISTRY: ClassVar[str]
    SQL_LOCK_REGISTRY: ClassVar[str]  # the registry row, locked until the transaction ends
    SQL_ADVANCE_INLINE: ClassVar[str]  # checkpoint = max(checkpoint, ?): the larger-of function differs
    SQL_TABLES_LIKE: ClassVar[str]  # table names LIKE ?, from the database's own catalog
    SQL_CREATE_SEALS: ClassVar[str]
    SQL_ADD_SEAL_SIGNATURE: ClassVar[str]
    SQL_CHAIN_ROWS: ClassVar[str]  # [from, to] positions, in global order, at most `limit`
    SQL_STREAM_CHAIN_ROWS: ClassVar[str]  # one stream's [from, to] versions, in version order

    # chronik's own tables, with each dialect's column types filled in (`{text}`, `{integer}`, `{bigint}`).
    CREATE_REGISTRY: Final = """CREATE TABLE IF NOT EXISTS projections (
        name                  {text}    PRIMARY KEY,  -- PostgreSQL: locked FOR UPDATE (inline hooks, swap)
        live_version          {integer} NOT NULL,     -- the live table set: <name>__<table>__v<live_version>
        code_version          {integer} NOT NULL,     -- Projection.version that built the live set
        position              {bigint}  NOT NULL,     -- checkpoint: committed with the table writes it covers
        building_version      {integer},              -- a rebuild in progress (NULL: none)
        building_code_version {integer},
        building_position     {bigint},
        updated_at            {text}    NOT NULL,
        side_effects_after    {bigint}  NOT NULL      -- side effects only for events after this position
    )"""
    CREATE_SEALS: Final = """CREATE TABLE IF NOT EXISTS seals (
        seal_no            {bigint} PRIMARY KEY,  -- 1, 2, 3, ...: a second sealer of a range fails here
        from_position      {bigint} NOT NULL,     -- ranges are contiguous: from = previous seal's to + 1
        to_position        {bigint} NOT NULL,
        event_count        {bigint} NOT NULL,
        previous_seal_hash {text}   NOT NULL,     -- chains the seals: editing one breaks every later one
        seal_hash          {text}   NOT NULL,
        sealed_at          {text}   NOT NULL,
        signature          {text}                 -- NULL: unsigned (and every seal made before signatures)
    )"""
    # Seal tables made before signatures get the column on the next seal (`ensure_seals`); until
    # then they are read without it (`seals`), so old databases verify as they are.
    ADD_SEAL_SIGNATURE: Final = "ALTER TABLE seals ADD COLUMN signature {text}"
    SQL_REGISTRY_COLUMNS: Final = (
        "name, live_version, code_version, position, building_version, building_code_version, "
        "building_position, updated_at, side_effects_after"
    )
    SQL_REGISTRY_ROW: Final = f"SELECT {SQL_REGISTRY_COLUMNS} FROM projections WHERE name = ?"
    SQL_REGISTRY_ROWS: Final = f"SELECT {SQL_REGISTRY_COLUMNS} FROM projections ORDER BY name"
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
    # (PostgreSQL, READ COMMITTED: a concurrent update makes it wait for the row, then re-check
    # the WHERE on the new version, so a stale batch matches nothing there too.)
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
    SQL_HEAD: Final = "SELECT coalesce(max(global_position), 0) FROM events"
    SEAL_COLUMNS: Final = (
        "seal_no, from_position, to_position, event_count, previous_seal_hash, seal_hash, sealed_at"
    )
    SQL_SEALS: Final = f"SELECT {SEAL_COLUMNS}, signature FROM seals ORDER BY seal_no"
    SQL_SEALS_BEFORE_SIGNATURES: Final = f"SELECT {SEAL_COLUMNS}, NULL FROM seals ORDER BY seal_no"
    SQL_INSERT_SEAL: Final = f"INSERT INTO seals ({SEAL_COLUMNS}, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    # Signing a seal made unsigned: only if it is still the seal that was verified, and unsigned.
    SQL_SIGN_SEAL: Final = (
        "UPDATE seals SET signature = ? WHERE seal_no = ? AND seal_hash = ? AND signature IS NULL"
    )
    SQL_EVENT_AT: Final = (
        "SELECT global_position, event_hash FROM events WHERE stream_name = ? AND stream_version = ?"
    )

    def __init__(self) -> None:
        self._translated: dict[str, str] = {}

    def statement(self, sql: str) -> str:
        """Handler SQL, written with `?` placeholders, in the driver's own placeholder style."""
        return sql

    def sql(self, statement: str) -> str:
        """`statement()` of one of chronik's own statements, translated once and kept."""
        translated = self._translated.get(statement)
        if translated is None:
            translated = self._translated[statement] = self.statement(statement)
        return translated

    # -- what each dialect fills in -------------------------------------------------------------

    @abc.abstractmethod
    def write_connection(self, uow: UnitOfWork) -> SQLConnection:
        """The unit of work's own connection: table writes made through it commit with the checkpoint."""

    @abc.abstractmethod
    def batched_writes(self, connection: SQLConnection) -> contextlib.AbstractContextManager[None]:
        """Around a batch of handler statements: lets a client/server database send them without
        waiting for each result (PostgreSQL's pipeline mode); errors surface by the block's end,
        as `BatchFailed` once the transaction is back where the batch began."""

    def is_unavailable(self, error: BaseException) -> bool:
        """Whether `error` is the database's trouble (a lost connection, a lock or busy timeout, a
        deadlock), not the handler's. Such an error is not wrapped as `ProjectionHandlerFailed`:
        it reaches the caller as the store reports it (`StoreUnavailable`, retryable), because
        nothing is wrong with the handler or the data and the batch may simply be run again."""
        return False

    @abc.abstractmethod
    def read_connection(self, store: EventStore) -> SQLConnection:
        """A connection outside any unit of work: each statement reads the latest commit."""

    @abc.abstractmethod
    def read_snapshot(self, store: EventStore) -> contextlib.AbstractContextManager[SQLConnection]:
        """A read transaction: every statement in it sees one snapshot, whatever commits meanwhile."""

    @abc.abstractmethod
    def final_head(self, store: EventStore, connection: SQLConnection) -> int | None:
        """Under `lock_registry_row`: the head a rebuild may swap at, or None to try again shortly."""

    @abc.abstractmethod
    def read_events(
        self, store: EventStore, connection: SQLConnection, first: int, last: int, event_types: Sequence[str]
    ) -> list[Any]:
        """Events in [first, last] of these types as `connection`'s transaction sees them."""

    @abc.abstractmethod
    def columns(self, connection: SQLConnection, table: str) -> list[tuple[str, int]]:
        """(column name, position in the primary key: 0 when not part of it), in table order."""

    @abc.abstractmethod
    def table_vanished(self, error: Exception) -> bool:
        """True when `error` says a table was dropped under a statement (a swap): worth one more try."""

    @abc.abstractmethod
    def _chain_rows(
        self, connection: SQLConnection, statement: str, parameters: Sequence[Any]
    ) -> list[ChainRow]:
        """The rows of `SQL_CHAIN_ROWS` or `SQL_STREAM_CHAIN_ROWS`, times as the append wrote them."""

    @abc.abstractmethod
    def _rows_if_table(
        self, connection: SQLConnection, table: str, statement: str, parameters: Sequence[Any] = ()
    ) -> list[Any] | None:
        """The rows of a read of one of chronik's tables, or None while that table does not exist."""

    def _creation_lock(self, connection: SQLConnection, table: str) -> None:
        """Taken before creating one of chronik's tables; a database with one writer needs none."""
        return None  # SQLite: the unit of work already holds the write lock

    def _time_parameter(self, moment: datetime) -> Any:
        """A point in time as the driver compares it with `recorded_at`."""
        return moment

    # -- the registry ---------------------------------------------------------------------------

    def ensure_registry(self, connection: SQLConnection) -> None:
        self._creation_lock(connection, "projections")
        connection.execute(self.SQL_CREATE_REGISTRY)

    def registry_row(self, connection: SQLConnection, name: str) -> RegistryRow | None:
        rows = self._rows_if_table(connection, "projections", self.SQL_REGISTRY_ROW, (name,))
        return RegistryRow(*rows[0]) if rows else None

    def lock_registry_row(self, connection: SQLConnection, name: str) -> RegistryRow | None:
        """The row, locked until the transaction ends (inline hooks and the swap take turns)."""
        rows = self._rows_if_table(connection, "projections", self.SQL_LOCK_REGISTRY, (name,))
        return RegistryRow(*rows[0]) if rows else None

    def registry_rows(self, connection: SQLConnection) -> list[RegistryRow]:
        rows = self._rows_if_table(connection, "projections", self.SQL_REGISTRY_ROWS)
        return [RegistryRow(*row) for row in rows or []]

    def insert_registry_row(self, connection: SQLConnection, name: str, code_version: int) -> None:
        connection.execute(self.sql(self.SQL_INSERT_REGISTRY), (name, code_version, _now()))

    def _updated(self, connection: SQLConnection, statement: str, parameters: Sequence[Any]) -> bool:
        """Run one of the registry's compare-and-set updates: True if it matched the row."""
        return bool(connection.execute(self.sql(statement), parameters).rowcount == 1)

    def advance(self, connection: SQLConnection, name: str, live_version: int, old: int, new: int) -> bool:
        return self._updated(connection, self.SQL_ADVANCE, (new, _now(), name, live_version, old))

    def advance_inline(self, connection: SQLConnection, name: str, live_version: int, last: int) -> bool:
        """Under `lock_registry_row`: the checkpoint becomes max(checkpoint, last)."""
        return self._updated(connection, self.SQL_ADVANCE_INLINE, (last, _now(), name, live_version))

    def start_building(self, connection: SQLConnection, name: str, version: int, code_version: int) -> None:
        connection.execute(self.sql(self.SQL_START_BUILDING), (version, code_version, _now(), name))

    def advance_building(
        self, connection: SQLConnection, name: str, version: int, old: int, new: int
    ) -> bool:
        return self._updated(connection, self.SQL_ADVANCE_BUILDING, (new, _now(), name, version, old))

    def swap(self, connection: SQLConnection, name: str, version: int, old: int, new: int) -> bool:
        return self._updated(connection, self.SQL_SWAP, (new, _now(), name, version, old))

    # -- introspection --------------------------------------------------------------------------

    def tables_with_prefix(self, connection: SQLConnection, prefix: str) -> list[str]:
        # `prefix` is built from checked identifiers; LIKE's `_` wildcard is escaped anyway.
        pattern = prefix.replace("_", "\\_") + "%"
        return [row[0] for row in connection.execute(self.sql(self.SQL_TABLES_LIKE), (pattern,)).fetchall()]

    def drop_table(self, connection: SQLConnection, table: str) -> None:
        connection.execute(f'DROP TABLE IF EXISTS "{table}"')

    def head_position(self, connection: SQLConnection) -> int:
        return int(connection.execute(self.SQL_HEAD).fetchone()[0])

    def count_events(
        self,
        connection: SQLConnection,
        after: int,
        up_to: int,
        event_types: Sequence[str] | None = None,
        recorded_until: datetime | None = None,
    ) -> int:
        """How many events lie in (after, up_to]: progress bars and lag count events, not positions.

        Callers pass an `up_to` they read from the store (below PostgreSQL's read barrier), so the
        count cannot change once taken.
        """
        clauses = ["global_position > ?", "global_position <= ?"]
        parameters: list[Any] = [after, up_to]
        if event_types is not None:
            if not event_types:
                return 0
            clauses.append(f"event_type IN ({', '.join('?' * len(event_types))})")
            parameters.extend(event_types)
        if recorded_until is not None:
            clauses.append("recorded_at <= ?")
            parameters.append(self._time_parameter(recorded_until))
        statement = self.sql(f"SELECT count(*) FROM events WHERE {' AND '.join(clauses)}")
        return int(connection.execute(statement, parameters).fetchone()[0])

    # -- seals ----------------------------------------------------------------------------------

    def ensure_seals(self, connection: SQLConnection) -> None:
        """Create the seals table, or give one made before signatures its `signature` column."""
        self._creation_lock(connection, "seals")
        connection.execute(self.SQL_CREATE_SEALS)
        if "signature" not in {name for name, _ in self.columns(connection, "seals")}:
            connection.execute(self.SQL_ADD_SEAL_SIGNATURE)

    def seals(self, connection: SQLConnection) -> list[SealRow]:
        columns = {name for name, _ in self.columns(connection, "seals")}
        if not columns:  # never sealed
            return []
        statement = self.SQL_SEALS if "signature" in columns else self.SQL_SEALS_BEFORE_SIGNATURES
        return [SealRow(*row) for row in connection.execute(self.sql(statement)).fetchall()]

    def insert_seal(self, connection: SQLConnection, seal: SealRow) -> None:
        # SealRow's fields are in the INSERT's column order.
        connection.execute(self.sql(self.SQL_INSERT_SEAL), msgspec.structs.astuple(seal))

    def sign_seal(self, connection: SQLConnection, seal: SealRow, signature: str) -> bool:
        """Add a signature to an unsigned seal; False if the seal changed or was signed meanwhile."""
        return self._updated(connection, self.SQL_SIGN_SEAL, (signature, seal.seal_no, seal.seal_hash))

    def chain_rows(
        self, connection: SQLConnection, from_position: int, to_position: int, limit: int
    ) -> list[ChainRow]:
        """Events as stored, exactly what their hashes cover, from `from_position` in global order."""
        return self._chain_rows(connection, self.SQL_CHAIN_ROWS, (from_position, to_position, limit))

    def stream_chain_rows(
        self, connection: SQLConnection, stream: str, from_version: int, to_version: int, limit: int
    ) -> list[ChainRow]:
        """One stream's events as stored, from `from_version` in version order (the chain's own order)."""
        parameters = (stream, from_version, to_version, limit)
        return self._chain_rows(connection, self.SQL_STREAM_CHAIN_ROWS, parameters)

    def stored_event(self, connection: SQLConnection, stream: str, version: int) -> tuple[int, str] | None:
        """(global position, stored hash) of one version of a stream, or None when it is absent."""
        row = connection.execute(self.sql(self.SQL_EVENT_AT), (stream, version)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))


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
    # The built-in backends register at first use: their dialect modules import this one.
    from chronik.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from chronik.projections.sqlite import SQLiteDialect

        register_dialect(SQLiteStore, SQLiteDialect())
        return dialect_for(store)
    from chronik.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from chronik.projections.postgres import PostgresDialect

        register_dialect(PostgresStore, PostgresDialect())
        return dialect_for(store)
    raise UnsupportedStore(store)
