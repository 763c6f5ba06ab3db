"""The embedded default: one SQLite file, shared safely by threads and processes.

Guarantees and the code that gives them:

* **One writer at a time, by the database.** Every unit of work starts with `BEGIN IMMEDIATE`,
  which takes SQLite's write lock before the first read. The version check, the position
  assignment and the inserts therefore see a log no one else is changing, in any process.
  Other writers wait for the lock up to `busy_timeout` seconds, then get a retryable
  `StoreUnavailable`. Readers never wait (WAL mode).
* **Versions.** The unique index `events_stream_version_uniq` rejects a second event at one
  stream version even if Python's check were wrong.
* **Global order without gaps.** Positions are `head + 1 ...` taken under the write lock, so
  commit order is position order and a tailing reader can never skip an event.
* **Durability.** `synchronous=FULL` (the default) fsyncs the WAL at every commit: an acknowledged
  append survives power loss. `?synchronous=normal` in the URL skips that fsync: a commit then
  survives a crash of the process but may be lost with the machine; appends get several times
  faster. Pick per deployment.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from chronik.clock import Clock
from chronik.errors import ChronikError, SchemaTooNew, StoreUnavailable, StreamNotFound, WrongExpectedVersion
from chronik.events.chain import GENESIS, event_hash
from chronik.events.envelope import (
    ANY,
    DEFAULT_MAX_EVENT_BYTES,
    STREAM_EXISTS,
    EncodedEvent,
    ExpectedVersion,
    RecordedEvent,
    category_of,
    check_stream_name,
    format_timestamp,
    parse_timestamp,
)
from chronik.store.contract import (
    AppendResult,
    EventPayload,
    EventStore,
    ExistingEvent,
    Snapshot,
    StreamInfo,
    UnitOfWork,
    check_expectation,
    resolve_retry,
)

SCHEMA_VERSION: Final = 1

# Each migration is applied once, in order, inside the write lock; `schema_migrations` records it.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE events (
            global_position INTEGER PRIMARY KEY,  -- head + 1, taken under the write lock
            event_id        TEXT    NOT NULL,
            stream_name     TEXT    NOT NULL,
            stream_version  INTEGER NOT NULL,     -- 0-based, no gaps: see events_stream_version_uniq
            category        TEXT    NOT NULL,
            event_type      TEXT    NOT NULL,
            schema_version  INTEGER NOT NULL,
            data            TEXT    NOT NULL,     -- JSON object
            metadata        TEXT    NOT NULL,     -- JSON object
            recorded_at     TEXT    NOT NULL,     -- fixed-width ISO 8601 UTC: text order is time order
            occurred_at     TEXT    NOT NULL,
            event_hash      TEXT    NOT NULL      -- chains to the stream's previous event: events/chain.py
        )""",
        # One event per stream version: the database refuses a lost race even if Python did not catch it.
        "CREATE UNIQUE INDEX events_stream_version_uniq ON events (stream_name, stream_version)",
        # An event id is recorded once; a retry is recognized through this index.
        "CREATE UNIQUE INDEX events_event_id_uniq ON events (event_id)",
        "CREATE INDEX events_category_position ON events (category, global_position)",
        """CREATE TABLE checkpoints (
            name        TEXT PRIMARY KEY,
            position    INTEGER NOT NULL,
            updated_at  TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE snapshots (
            stream_name     TEXT    NOT NULL,
            schema_version  INTEGER NOT NULL,
            stream_version  INTEGER NOT NULL,
            aggregate_type  TEXT    NOT NULL,
            state           TEXT    NOT NULL,
            recorded_at     TEXT    NOT NULL,
            PRIMARY KEY (stream_name, schema_version, stream_version)
        ) WITHOUT ROWID""",
    ),
}

# In `RecordedEvent`'s field order, so that a page of rows converts in one call (see `_to_recorded`).
_EVENT_COLUMNS: Final = (
    "event_id, stream_name, stream_version, global_position, event_type, "
    "data, metadata, schema_version, recorded_at, occurred_at"
)

SQL_STREAM_VERSION: Final = "SELECT max(stream_version) FROM events WHERE stream_name = ?"
SQL_STREAM_TIP: Final = (
    "SELECT stream_version, event_hash FROM events WHERE stream_name = ? ORDER BY stream_version DESC LIMIT 1"
)
SQL_LOG_HEAD: Final = "SELECT global_position, recorded_at FROM events ORDER BY global_position DESC LIMIT 1"
SQL_INSERT_EVENT: Final = (
    "INSERT INTO events (global_position, event_id, stream_name, stream_version, category, event_type, "
    "schema_version, data, metadata, recorded_at, occurred_at, event_hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_FIND_EVENT: Final = (
    "SELECT event_id, stream_name, stream_version, global_position FROM events WHERE event_id = ?"
)


def _to_recorded(rows: Iterable[tuple[Any, ...]]) -> list[RecordedEvent]:
    """Rows of `_EVENT_COLUMNS` to events: msgspec parses the UUIDs and ISO times in C."""
    return msgspec.convert(list(rows) if not isinstance(rows, list) else rows, list[RecordedEvent])


class SQLiteUnitOfWork(UnitOfWork):
    """A `BEGIN IMMEDIATE` transaction on this thread's connection.

    `connection` is the sqlite3 connection inside the transaction: projections write their
    tables through it so that their rows and their checkpoint commit with the events.
    """

    store: SQLiteStore

    def __init__(self, store: SQLiteStore, connection: sqlite3.Connection) -> None:
        super().__init__(store)
        self.connection = connection
        self._head: tuple[int, str] | None = None  # (last position, last recorded_at) in this transaction

    def _log_head(self) -> tuple[int, str]:
        if self._head is None:
            row = self.connection.execute(SQL_LOG_HEAD).fetchone()
            self._head = (row[0], row[1]) if row else (0, "")
        return self._head

    def _append_encoded(
        self, stream: str, batch: Sequence[EncodedEvent], expected: ExpectedVersion
    ) -> AppendResult:
        connection = self.connection
        tip = connection.execute(SQL_STREAM_TIP, (stream,)).fetchone()
        actual: int | None = None if tip is None else tip[0]
        if not batch:
            if not check_expectation(stream, expected, actual):
                raise WrongExpectedVersion(stream, expected, actual)
            return AppendResult(stream, actual, ())
        if not check_expectation(stream, expected, actual) or (
            expected in (ANY, STREAM_EXISTS) and self._is_recorded(batch[0].event_id)
        ):
            retry = resolve_retry(
                stream, batch, expected, self.store.find_events([event.event_id for event in batch])
            )
            if retry is not None:
                return retry
            raise WrongExpectedVersion(stream, expected, actual)

        head, last_recorded = self._log_head()
        now = format_timestamp(self.store.clock())
        recorded_at = now if now > last_recorded else last_recorded  # never decreasing along the log
        first_version = -1 if actual is None else actual
        category = category_of(stream)
        previous_hash = GENESIS if tip is None else tip[1]
        rows = []
        for index, event in enumerate(batch):
            event_id = str(event.event_id)
            version = first_version + 1 + index
            occurred_at = recorded_at if event.occurred_at is None else format_timestamp(event.occurred_at)
            previous_hash = event_hash(
                previous_hash,
                event_id,
                stream,
                version,
                event.type,
                event.schema_version,
                recorded_at,
                occurred_at,
                event.json_metadata,
                event.json_data,
            )
            rows.append(
                (
                    head + 1 + index,
                    event_id,
                    stream,
                    version,
                    category,
                    event.type,
                    event.schema_version,
                    event.json_data,
                    event.json_metadata,
                    recorded_at,
                    occurred_at,
                    previous_hash,
                )
            )
        try:
            connection.executemany(SQL_INSERT_EVENT, rows)
        except sqlite3.IntegrityError:
            # Only an event id recorded elsewhere gets here: the version was checked under the lock.
            resolve_retry(
                stream, batch, expected, self.store.find_events([event.event_id for event in batch])
            )
            raise
        last = head + len(rows)
        self._head = (last, recorded_at)
        return AppendResult(stream, first_version + len(rows), tuple(range(head + 1, last + 1)))

    def _is_recorded(self, event_id: uuid.UUID) -> bool:
        return self.connection.execute(SQL_FIND_EVENT, (str(event_id),)).fetchone() is not None

    def _save_checkpoint(self, name: str, position: int) -> None:
        self.connection.execute(
            "INSERT INTO checkpoints (name, position, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            (name, position, format_timestamp(self.store.clock())),
        )


class SQLiteStore(EventStore):
    """`sqlite:///path/to/file.db` (three slashes and a relative path, four for an absolute one)."""

    def __init__(
        self,
        path: str,
        *,
        clock: Clock | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        synchronous: str = "full",
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__(clock=clock, max_event_bytes=max_event_bytes)
        if synchronous.lower() not in ("full", "normal", "extra"):
            raise ChronikError(f"synchronous must be full, normal or extra, not {synchronous!r}")
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._migrate()

    # -- connections -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must not be shared between threads)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise ChronikError(f"{self!r} is closed")
            try:
                connection = sqlite3.connect(
                    self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False
                )
                connection.execute("PRAGMA journal_mode = WAL")
            except sqlite3.Error as error:
                raise StoreUnavailable(f"cannot open SQLite file {self.path!r}: {error}") from None
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            connection.execute("PRAGMA temp_store = MEMORY")
            connection.execute("PRAGMA cache_size = -32000")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SQLiteUnitOfWork]:
        connection = self.connection()
        if connection.in_transaction:
            raise ChronikError("a unit of work is already open on this thread; units of work do not nest")
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise StoreUnavailable(
                f"could not take the SQLite write lock within {self.busy_timeout}s: {error}"
            ) from None
        uow = SQLiteUnitOfWork(self, connection)
        try:
            yield uow
            uow.ensure_not_aborted()
        except BaseException:
            connection.execute("ROLLBACK")
            uow.finished(committed=False)
            raise
        try:
            connection.execute("COMMIT")
        except BaseException:
            uow.finished(committed=False)
            raise
        uow.finished(committed=True)

    def _migrate(self) -> None:
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            found = connection.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[
                0
            ]
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(found, SCHEMA_VERSION)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, format_timestamp(self.clock())),
                )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
            self._connections.clear()
        self._local = threading.local()

    # -- reading -----------------------------------------------------------------------------

    def _read_stream_rows(
        self,
        columns: str,
        stream: str,
        low: int | None,
        high: int | None,
        recorded_until: datetime | None,
        occurred_until: datetime | None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[Any]:
        """One stream's rows within inclusive version bounds and times; `StreamNotFound` if it has none."""
        check_stream_name(stream)
        clauses = ["stream_name = ?"]
        params: list[Any] = [stream]
        for clause, value in (
            ("stream_version >= ?", low),
            ("stream_version <= ?", high),
            ("recorded_at <= ?", None if recorded_until is None else format_timestamp(recorded_until)),
            ("occurred_at <= ?", None if occurred_until is None else format_timestamp(occurred_until)),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        sql = (
            f"SELECT {columns} FROM events WHERE {' AND '.join(clauses)} "
            f"ORDER BY stream_version {'DESC' if backwards else 'ASC'}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, limit))
        connection = self.connection()
        rows = connection.execute(sql, params).fetchall()
        if not rows and connection.execute(SQL_STREAM_VERSION, (stream,)).fetchone()[0] is None:
            raise StreamNotFound(stream)
        return rows

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[RecordedEvent]:
        low, high = (to_version, from_version) if backwards else (from_version, to_version)
        rows = self._read_stream_rows(
            _EVENT_COLUMNS,
            stream,
            low,
            high,
            recorded_until,
            occurred_until,
            backwards=backwards,
            limit=limit,
        )
        return _to_recorded(rows)

    def read_stream_payloads(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[EventPayload]:
        # Hydration's lean read: the four columns it uses, straight off the (stream, version) index.
        rows: list[EventPayload] = self._read_stream_rows(
            "stream_version, event_type, schema_version, data",
            stream,
            from_version,
            to_version,
            recorded_until,
            occurred_until,
        )
        return rows

    def read_all(
        self,
        from_position: int = 0,
        *,
        to_position: int | None = None,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        clauses = ["global_position >= ?"]
        params: list[Any] = [from_position]
        if to_position is not None:
            clauses.append("global_position <= ?")
            params.append(to_position)
        if categories:
            clauses.append(f"category IN ({', '.join('?' * len(categories))})")
            params.extend(categories)
        if event_types:
            clauses.append(f"event_type IN ({', '.join('?' * len(event_types))})")
            params.extend(event_types)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} ORDER BY global_position"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, limit))
        return _to_recorded(self.connection().execute(sql, params).fetchall())

    def head_position(self) -> int:
        row = self.connection().execute("SELECT max(global_position) FROM events").fetchone()
        return int(row[0] or 0)

    def stream_version(self, stream: str) -> int | None:
        check_stream_name(stream)
        version: int | None = self.connection().execute(SQL_STREAM_VERSION, (stream,)).fetchone()[0]
        return version

    def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        rows = self.connection().execute(
            "SELECT stream_name, max(stream_version), count(*), min(recorded_at), max(recorded_at) "
            "FROM events WHERE stream_name >= ? AND stream_name < ? "
            "GROUP BY stream_name ORDER BY stream_name LIMIT ?",
            (prefix, prefix + "\U0010ffff", max(0, limit)),
        )
        return [
            StreamInfo(
                row[0], category_of(row[0]), row[1], row[2], parse_timestamp(row[3]), parse_timestamp(row[4])
            )
            for row in rows
        ]

    def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]:
        connection = self.connection()
        found = []
        for event_id in event_ids:
            row = connection.execute(SQL_FIND_EVENT, (str(event_id),)).fetchone()
            if row is not None:
                found.append(ExistingEvent(uuid.UUID(row[0]), row[1], row[2], row[3]))
        return found

    def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        rows = self.connection().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE json_extract(metadata, '$.correlation_id') = ? "
            "ORDER BY global_position",
            (correlation_id,),
        )
        return _to_recorded(rows)

    # -- checkpoints and snapshots -------------------------------------------------------------

    def load_checkpoint(self, name: str) -> int | None:
        row = self.connection().execute("SELECT position FROM checkpoints WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def save_snapshot(self, snapshot: Snapshot) -> None:
        # Outside a unit of work this commits on its own (autocommit); inside one, with it.
        self.connection().execute(
            "INSERT OR REPLACE INTO snapshots (stream_name, schema_version, stream_version, aggregate_type, "
            "state, recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                snapshot.stream,
                snapshot.schema_version,
                snapshot.stream_version,
                snapshot.aggregate_type,
                snapshot.json_state,
                format_timestamp(snapshot.recorded_at),
            ),
        )

    def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        row = (
            self.connection()
            .execute(
                "SELECT stream_version, aggregate_type, state, recorded_at FROM snapshots "
                "WHERE stream_name = ? AND schema_version = ? AND stream_version <= ? "
                "ORDER BY stream_version DESC LIMIT 1",
                (stream, schema_version, at_or_before if at_or_before is not None else 2**62),
            )
            .fetchone()
        )
        if row is None:
            return None
        return Snapshot(
            stream=stream,
            stream_version=row[0],
            aggregate_type=row[1],
            schema_version=schema_version,
            json_state=row[2],
            recorded_at=parse_timestamp(row[3]),
        )

    def delete_snapshots(self, stream: str | None = None) -> int:
        connection = self.connection()
        if stream is None:
            cursor = connection.execute("DELETE FROM snapshots")
        else:
            cursor = connection.execute("DELETE FROM snapshots WHERE stream_name = ?", (stream,))
        return cursor.rowcount
