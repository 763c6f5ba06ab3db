"""The projections' (and seals') dialect for PostgreSQL; SQLite's is `sqlite.py`, the shared SQL `dialect.py`.

SQLite serializes every writer with one lock; here each guarantee comes from a row lock or from
the store's read barrier, written beside the statement that gives it:

* **Exactly once, async.** A batch's table writes and `SQL_ADVANCE` commit in one transaction;
  the UPDATE names the position the batch started from, and a concurrent change of the row (another
  runner, an inline hook, a swap) makes it match nothing after it waited for the row lock.
* **Inline projections: the registry row is the lock.** Positions are assigned before commit, so
  two concurrent appends can reach the projection out of position order. The inline hook therefore
  locks the registry row (`SQL_LOCK_REGISTRY`, `FOR UPDATE`, held until the append commits): the
  inline-projected appends of one projection take turns (the honest price of a view that is always
  current). Each applies exactly its own events (no one else can see them before it commits) and
  moves the checkpoint to the larger of the current one and its last position
  (`SQL_ADVANCE_INLINE`). So an inline checkpoint on PostgreSQL means "every event of every
  transaction that held this lock": `wait_until(my_position)` after my append is read-your-writes,
  but an event below the checkpoint whose transaction has not committed yet is not in the tables
  yet (it will be when that transaction commits). Every process that appends must attach the
  inline projection: unlike SQLite, a writer without the hook is not caught up later.
* **Async readers stay below the safe head.** Runners read the log through `store.read_all`, which
  only returns events below the store's read barrier: nothing can commit below a checkpoint later.
* **The rebuild's final step** (`final_head`) locks the registry row, then swaps only at a moment
  when every committed event lies below the barrier of the *other* writers: then its new checkpoint
  is safe for async runners, and no inline transaction has applied an event to the old set that
  the new set lacks (inline transactions still running apply theirs to the new set after the swap).
* **Reads** (`read_snapshot`) run in `REPEATABLE READ READ ONLY` transactions on pooled connections.

Handler SQL is written with `?` placeholders on both databases; `statement()` turns them into
psycopg's `%s` (and a literal `%` into `%%`) once per distinct statement.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Final

import psycopg
import psycopg.errors

from chronik.events.envelope import format_timestamp
from chronik.projections.dialect import BatchFailed, ChainRow, Dialect, SQLConnection
from chronik.projections.errors import ProjectionError
from chronik.store import postgres_sql as store_sql
from chronik.store.contract import EventStore, UnitOfWork
from chronik.store.postgres import PostgresStore, PostgresUnitOfWork, _lock_key
from chronik.store.postgres_sql import qmark_to_format


class _Rows:
    """A finished statement's rows and rowcount (the connection has gone back to the pool)."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


class _PipelinedCursor:
    """A handler statement's cursor inside a pipelined batch: its result arrives with a later sync.

    psycopg's fetch methods wait for the result themselves; `rowcount` does not (it reads -1 until
    the sync), so asking for it sends the sync first: a handler that needs it pays one round trip.
    """

    __slots__ = ("_cursor", "_pipeline")

    def __init__(self, cursor: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        self._pipeline.sync()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def fetchmany(self, size: int = 0) -> list[Any]:
        return self._cursor.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


# The advisory lock each of chronik's tables is created under (same keys as before the shared base).
CREATION_LOCKS: Final = {"projections": "projections-registry", "seals": "seals"}

_PLAIN_WRITE: Final = re.compile(r"\s*(?:INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_RETURNING: Final = re.compile(r"\bRETURNING\b", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _is_plain_write(sql: str) -> bool:
    """A write whose only result is a row count: it may wait in a batch's buffer (see `_Connection`)."""
    return _PLAIN_WRITE.match(sql) is not None and _RETURNING.search(sql) is None


class _BufferedWrite:
    """A handler's write statement waiting in a batch's buffer, to be sent with its neighbours.

    Asking for its result (`rowcount`, a fetch) while it is still the latest statement takes it out
    of the buffer and runs it alone, so the handler sees exactly what an unbatched run shows. Once
    a later statement has been issued, it went out with its group and its own row count is gone:
    asking then is a clear error, not a wrong number.
    """

    __slots__ = ("_connection", "cursor", "parameters", "sent_in_group", "sql")

    def __init__(self, connection: _Connection, sql: str, parameters: Sequence[Any]) -> None:
        self._connection = connection
        self.sql = sql
        self.parameters = parameters
        self.cursor: _PipelinedCursor | None = None
        self.sent_in_group = False

    def _result(self) -> _PipelinedCursor:
        return self._connection.run_alone(self)

    @property
    def rowcount(self) -> int:
        return self._result().rowcount

    def fetchone(self) -> Any:
        return self._result().fetchone()

    def fetchall(self) -> list[Any]:
        return self._result().fetchall()

    def fetchmany(self, size: int = 0) -> list[Any]:
        return self._result().fetchmany(size)


class _Connection:
    """A psycopg connection as projections use it (`executemany` lives on psycopg's cursors).

    While `PostgresDialect.batched_writes` runs (a batch of handler statements), the connection is
    in pipeline mode and plain writes (INSERT, UPDATE, DELETE without RETURNING) are buffered:
    consecutive executions of one statement go out as one `executemany` (one conversion of the
    query, no cursor per event), anything else first sends the buffer, so the server runs every
    statement in the order the handlers issued it. Reads wait for their own result as usual.
    """

    __slots__ = ("_buffer", "pipeline", "raw")

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.pipeline: psycopg.Pipeline | None = None  # set while `batched_writes` runs
        self._buffer: list[_BufferedWrite] = []  # consecutive executions of one plain write

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        if self.pipeline is None:
            return self.raw.execute(sql, parameters)
        if _is_plain_write(sql):
            if self._buffer and self._buffer[0].sql != sql:
                self.send_buffer()
            write = _BufferedWrite(self, sql, parameters)
            self._buffer.append(write)
            return write
        self.send_buffer()
        return _PipelinedCursor(self.raw.execute(sql, parameters), self.pipeline)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        self.send_buffer()
        cursor = self.raw.cursor()
        cursor.executemany(sql, parameters)
        if self.pipeline is None:
            return cursor
        return _PipelinedCursor(cursor, self.pipeline)  # its rowcount waits for the result

    def send_buffer(self) -> None:
        """Send the buffered run of one statement (queued in the pipeline: no waiting here)."""
        if not self._buffer:
            return
        writes, self._buffer = self._buffer, []
        for write in writes:
            write.sent_in_group = True
        with self.raw.cursor() as cursor:
            cursor.executemany(writes[0].sql, [write.parameters for write in writes])

    def forget_buffer(self) -> None:
        self._buffer = []

    def run_alone(self, write: _BufferedWrite) -> _PipelinedCursor:
        """The result of one buffered write: taken out of the buffer and run by itself."""
        if write.cursor is not None:
            return write.cursor
        if write.sent_in_group or self.pipeline is None or not self._buffer or self._buffer[-1] is not write:
            raise ProjectionError(
                "a projection handler asked for the result of a write after issuing another statement; "
                "in a batch, writes are sent together: read a write's rowcount before the next statement"
            )
        self._buffer.pop()
        self.send_buffer()
        write.cursor = _PipelinedCursor(self.raw.execute(write.sql, write.parameters), self.pipeline)
        return write.cursor


class _PooledReader:
    """`read_connection`: each statement on a pooled connection, in its own transaction."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        with self._store.pooled_connection() as connection:
            cursor = connection.execute(sql, parameters)
            rows = cursor.fetchall() if cursor.description is not None else []
            return _Rows(rows, cursor.rowcount)

    def executemany(self, sql: str, parameters: Any, /) -> None:
        with self._store.pooled_connection() as connection, connection.cursor() as cursor:
            cursor.executemany(sql, parameters)


class PostgresDialect(Dialect):
    positions_in_commit_order: ClassVar[bool] = False  # see "Inline projections" above

    COLUMN_TYPES: ClassVar[dict[str, str]] = {"text": "text", "integer": "integer", "bigint": "bigint"}
    SQL_CREATE_REGISTRY: ClassVar[str] = Dialect.CREATE_REGISTRY.format(**COLUMN_TYPES)
    # Guarantee: concurrent first registrations create the tables once (CREATE TABLE IF NOT EXISTS
    # alone can fail when two transactions race on the catalog).
    SQL_CREATE_LOCK: Final = "SELECT pg_advisory_xact_lock(%s)"
    SQL_TABLE_EXISTS: Final = "SELECT to_regclass(%s) IS NOT NULL"
    # The inline hook's and the final rebuild step's lock: held until their transaction ends, so
    # inline-projected appends of one projection, and the swap, take turns.
    SQL_LOCK_REGISTRY: ClassVar[str] = Dialect.SQL_REGISTRY_ROW + " FOR UPDATE"
    # Inline, under SQL_LOCK_REGISTRY: never moves the checkpoint back (an earlier-positioned
    # transaction may get the lock after a later one).
    SQL_ADVANCE_INLINE: ClassVar[str] = (
        "UPDATE projections SET position = greatest(position, ?), updated_at = ? "
        "WHERE name = ? AND live_version = ?"
    )
    SQL_TABLES_LIKE: ClassVar[str] = (
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename LIKE ? ESCAPE '\\' ORDER BY tablename"
    )
    # The read barrier of every writer but this transaction (see SQL_WRITERS_BARRIER in the store):
    # the final rebuild step is itself a registered writer and must not wait for itself.
    SQL_OTHER_WRITERS_BARRIER: Final = store_sql.SQL_WRITERS_BARRIER.replace(
        "AND classid::bigint = %s AND objid::bigint = %s)",
        "AND classid::bigint = %s AND objid::bigint = %s AND pid <> pg_backend_pid())",
    )
    SQL_READ_EVENTS: Final = (
        f"SELECT {store_sql.EVENT_COLUMNS} FROM events WHERE global_position >= %s AND global_position <= %s "
        "AND event_type = ANY(%s) ORDER BY global_position"
    )
    SQL_COLUMNS: Final = (
        "SELECT a.attname, coalesce((SELECT k.n FROM pg_index i, "
        "unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
        "WHERE i.indrelid = a.attrelid AND i.indisprimary AND k.attnum = a.attnum), 0) "
        "FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum"
    )

    SQL_BATCH_SAVEPOINT: Final = "SAVEPOINT chronik_batch"
    SQL_BATCH_ROLLBACK: Final = "ROLLBACK TO SAVEPOINT chronik_batch"

    SQL_CREATE_SEALS: ClassVar[str] = Dialect.CREATE_SEALS.format(**COLUMN_TYPES)
    SQL_ADD_SEAL_SIGNATURE: ClassVar[str] = Dialect.ADD_SEAL_SIGNATURE.format(**COLUMN_TYPES)
    # The stored text the hash was computed over (events/chain.py): json keeps the text byte for
    # byte, and times are formatted the way the append formatted them. In global order ...
    CHAIN_COLUMNS: ClassVar[str] = (
        "SELECT global_position, event_id::text, stream_name, stream_version, event_type, schema_version, "
        "recorded_at, occurred_at, metadata::text, data::text, event_hash FROM events "
    )
    SQL_CHAIN_ROWS: ClassVar[str] = (
        CHAIN_COLUMNS
        + "WHERE global_position >= %s AND global_position <= %s ORDER BY global_position LIMIT %s"
    )
    # ... and one stream's, in version order (the unique index on stream and version).
    SQL_STREAM_CHAIN_ROWS: ClassVar[str] = (
        CHAIN_COLUMNS + "WHERE stream_name = %s AND stream_version >= %s AND stream_version <= %s "
        "ORDER BY stream_version LIMIT %s"
    )

    # -- connections -----------------------------------------------------------------------------

    def statement(self, sql: str) -> str:
        return qmark_to_format(sql)

    def write_connection(self, uow: UnitOfWork) -> SQLConnection:
        if not isinstance(uow, PostgresUnitOfWork):
            raise TypeError("the PostgreSQL dialect needs a unit of work of a PostgreSQL store")
        return _Connection(uow.connection)

    def read_connection(self, store: EventStore) -> SQLConnection:
        assert isinstance(store, PostgresStore)
        return _PooledReader(store)

    @contextlib.contextmanager
    def read_snapshot(self, store: EventStore) -> Iterator[SQLConnection]:
        """One snapshot for every statement inside; read-only, so it always ends with ROLLBACK."""
        assert isinstance(store, PostgresStore)
        with store.pooled_connection() as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield _Connection(connection)
            finally:
                if not connection.closed:
                    with contextlib.suppress(psycopg.Error):
                        connection.execute("ROLLBACK")

    @contextlib.contextmanager
    def batched_writes(self, connection: SQLConnection) -> Iterator[None]:
        """Pipeline mode for a batch of handler statements: sent without waiting for each result.

        Without it every handler statement was a round trip and a cursor (rebuilds ran at about
        5,000 events/s). The statements still run in the order the handlers issued them, in the
        unit of work's transaction, so a batch's rows and its checkpoint still commit together; the
        block's end waits for every result, and an error in any statement is raised there (the
        transaction then rolls back, as before). Plain writes are grouped (see `_Connection`); a
        handler that reads (`tx.query`, `fetchone`) or asks for a write's `rowcount` right after
        issuing it waits for that one result.
        """
        if not isinstance(connection, _Connection) or connection.pipeline is not None:
            yield
            return
        try:
            with connection.raw.pipeline() as pipeline:
                connection.pipeline = pipeline
                # Queued like the rest (no round trip): lets a failed batch be run again, one
                # statement at a time, to name the event whose statement failed.
                connection.raw.execute(self.SQL_BATCH_SAVEPOINT)
                try:
                    yield
                    connection.send_buffer()
                finally:
                    connection.pipeline = None
                    connection.forget_buffer()  # after an error: the transaction rolls back anyway
        except Exception as error:
            try:
                connection.raw.execute(self.SQL_BATCH_ROLLBACK)
            except psycopg.Error:
                raise error from None  # cannot go back: the caller's transaction rolls back as is
            raise BatchFailed(error) from error

    # -- what differs from SQLite ------------------------------------------------------------------

    def is_unavailable(self, error: BaseException) -> bool:
        # OperationalError: a lost connection, a lock timeout, a deadlock, a cancelled statement;
        # a handler's own mistakes are other classes (IntegrityError, DataError, ProgrammingError).
        return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))

    def _creation_lock(self, connection: SQLConnection, table: str) -> None:
        connection.execute(self.SQL_CREATE_LOCK, (_lock_key(CREATION_LOCKS[table], "registry"),))

    def _rows_if_table(
        self, connection: SQLConnection, table: str, statement: str, parameters: Sequence[Any] = ()
    ) -> list[Any] | None:
        if not connection.execute(self.SQL_TABLE_EXISTS, (table,)).fetchone()[0]:
            return None
        rows: list[Any] = connection.execute(self.sql(statement), parameters).fetchall()
        return rows

    # -- the final step of a rebuild ---------------------------------------------------------------

    def final_head(self, store: EventStore, connection: SQLConnection) -> int | None:
        """Under the registry row lock: the head the swap may use, or None to try again shortly.

        Safe when every committed event lies below the other writers' barrier: nothing can then
        commit below it later (async runners go on from it), and everything an inline transaction
        applied to the old set before the lock is committed, hence below it and in the new set.
        """
        assert isinstance(store, PostgresStore)
        head = self.head_position(connection)
        barrier = int(connection.execute(self.SQL_OTHER_WRITERS_BARRIER, store._barrier_params).fetchone()[0])
        return head if head < barrier << store_sql.POSITION_SHIFT else None

    def read_events(
        self, store: EventStore, connection: SQLConnection, first: int, last: int, event_types: Sequence[str]
    ) -> list[Any]:
        """Committed events in [first, last] of these types, through `connection` (no barrier: the
        caller made sure nothing can still appear in that range)."""
        from chronik.store.postgres import _to_recorded

        rows = connection.execute(self.SQL_READ_EVENTS, (first, last, list(event_types))).fetchall()
        return [_to_recorded(row) for row in rows]

    # -- introspection -----------------------------------------------------------------------------

    def columns(self, connection: SQLConnection, table: str) -> list[tuple[str, int]]:
        rows = connection.execute(self.SQL_COLUMNS, (table,)).fetchall()
        return [(row[0], int(row[1])) for row in rows]

    def table_vanished(self, error: Exception) -> bool:
        """A query that found the live set in the registry, then waited behind a swap's DROP TABLE:
        PostgreSQL looks the name up again after the lock and reports it undefined."""
        return isinstance(error, psycopg.errors.UndefinedTable)

    # -- seals -------------------------------------------------------------------------------------

    def _chain_rows(
        self, connection: SQLConnection, statement: str, parameters: Sequence[Any]
    ) -> list[ChainRow]:
        rows = connection.execute(statement, parameters).fetchall()
        return [(*row[:6], format_timestamp(row[6]), format_timestamp(row[7]), *row[8:]) for row in rows]
