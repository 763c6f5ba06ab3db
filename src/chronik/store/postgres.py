"""`postgresql://`: the store for many processes on many machines, on a PostgreSQL server.

The SQL lives in `postgres_sql.py`, each statement beside the guarantee it gives; what is decided
from the server's answers (the append's checks, the hash chain, the read barrier's bookkeeping)
lives in `postgres_core.py`, shared with the asyncio store (`chronik.aio.postgres`). In short:

* **Global order without gaps, writers in parallel.** A sequence number taken at insert becomes
  visible at commit, in another order, so a reader tailing by position can pass a number whose
  transaction commits a moment later and never see that event (the "skipped event" bug of many SQL
  event stores). The usual cure, one table lock per append, puts every writer in one queue.
  Instead, a transaction's events get the positions
  `(transaction id << 20) + 0, 1, 2, ...`. Readers (`read_all`, `head_position`,
  `wait_for_events`) only return positions below a barrier below which every writer has finished
  and above which every writer that can still commit lies, so nothing can ever appear below what a
  reader has seen (the proof is beside `SQL_READ_BARRIER`). The barrier is the larger of the
  oldest transaction running on the server (free to read) and the oldest transaction still
  writing to this schema (a look at the lock table, refreshed at most every 50 ms when a read
  finds nothing new). No lock is shared by all writers until commit; only writers of the same
  stream take turns (an advisory lock per stream; the unique index on stream and version stays the
  last word). The stream's lock is granted before the transaction takes its id, so a stream's
  later versions always get higher positions (see SQL_LOCK_STREAM; a unit of work appending to a
  further stream after its position was fixed checks the tip instead and may raise
  `WriteOrderConflict`). Positions are not contiguous. A transaction writes at most 2**20 events. The price:
  while a unit of work on this schema runs, readers stop at its position; keep units of work short.
  Other programs' transactions on the same server hold readers back for 50 ms at most.
* **recorded_at never decreases along the global order, exactly.** It is fixed once per
  transaction, together with the transaction id, by `fix_position()`: the writer's clock reading
  clamped to a high-water mark, under an advisory lock held for that one call (not until commit).
  All events of a transaction share that time. The clock is read just before the call, so a time
  may be raised to a concurrent writer's reading (by the time the two calls were apart, typically
  microseconds); it is never lowered and never out of order. It is the time the transaction took
  its place in the order, not its commit time: a long unit of work commits later than it says.
  The lock for that call is the one thing all writers of a schema share, for microseconds each.
* **Reading a stream is not held back.** `read_stream`, `stream_version`, `list_streams` and
  `read_correlated` show every committed event, also ones above the read barrier (a writer needs
  its own last write to decide the next). Only the global readers wait for the barrier: do not
  resume `read_all` from a position learned elsewhere.
* **Append hooks** (`add_append_hook`, inline projections) run in the append's transaction
  before it commits: with hooks, `append` sends its COMMIT after them instead of with the insert,
  and the hook's events are read back through the transaction's own connection (they are not
  committed, so no other connection can see them). A hook that needs order among concurrent
  appends must lock something itself: positions are fixed before commit, not in commit order.
* **Read your own writes.** After a unit of work of this store object committed events, its next
  global read recomputes the writers' barrier at once (not up to 50 ms later), so it shows them
  unless an older writer still runs.
* **Live delivery.** Right after an append's COMMIT, in the same message, a NOTIFY follows in its
  own tiny transaction (not in the append's: see `SQL_NOTIFY_AFTER_COMMIT` for why); a background
  LISTEN connection wakes `wait_for_events`, which then re-reads the barrier. If the connection
  dies between the two, waiting readers find the events at their next periodic look (at most a
  second later).
* **Connection loss** (server restart, a killed backend, a pool that cannot connect) raises a
  retryable `StoreUnavailable`, and the pool's idle connections are checked so the next call gets a
  working one. A read that met a dead pooled connection is tried once more by itself (it changes
  nothing); a write never is, because its outcome may be unknown: the caller re-sends it with the
  same event ids, and the store acknowledges it without writing it twice.
* **Schemas.** `?schema=NAME` (default `chronik`) is the search_path; the schema and its tables are
  created and migrated on open, once even when several processes open it at the same time.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from chronik.clock import Clock
from chronik.errors import (
    ChronikError,
    StreamNotFound,
    WrongExpectedVersion,
)
from chronik.events.envelope import (
    ANY,
    DEFAULT_MAX_EVENT_BYTES,
    EncodedEvent,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    check_stream_name,
)
from chronik.store import postgres_core as core
from chronik.store import postgres_sql as q
from chronik.store.contract import (
    AppendResult,
    EventPayload,
    EventStore,
    ExistingEvent,
    Snapshot,
    StreamInfo,
    UnitOfWork,
    resolve_retry,
)
from chronik.store.postgres_core import (
    DEFAULT_SCHEMA,
    PostgresSettings,
    WritersBarrier,
)

# Errors after which the connection (or the server) is gone or the transaction was cancelled:
# trying again later can succeed.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
_T = TypeVar("_T")
# Moved to postgres_core.py (shared with the asyncio store); the layers above import these from here.
_EPOCH: Final = core.EPOCH
_lock_key = core.lock_key
_micros = core.micros
_to_recorded = core.to_recorded
_to_recorded_page = core.to_recorded_page


class PostgresUnitOfWork(UnitOfWork):
    """One PostgreSQL transaction on one pooled connection.

    `connection` is the psycopg connection inside the transaction, for projections that write
    their own tables so that their rows commit with the events and the checkpoint. Asking for it
    fixes the transaction's place in the global order first (see `fix_position()`), because the
    transaction's first write must be that call.
    """

    store: PostgresStore

    def __init__(self, store: PostgresStore, connection: psycopg.Connection[Any]) -> None:
        super().__init__(store)
        self._connection = connection
        # Parameters bound on the client: several statements then travel in one message and one
        # round trip (the server's extended protocol allows one statement per message).
        self._cursor = psycopg.ClientCursor(connection)
        self._base_position: int | None = None  # transaction id << 20, once fixed
        self._recorded_at = _EPOCH
        self._next_index = 0  # index within the transaction of the next event
        self.appended = False
        self.commit_with_append = False  # `store.append`: COMMIT travels with the insert
        self.committed = False

    @property
    def connection(self) -> psycopg.Connection[Any]:
        self._fix_position()
        return self._connection

    @property
    def last_position(self) -> int:
        """The position of the last event this unit of work wrote (only meaningful if it wrote)."""
        return (self._base_position or 0) + self._next_index - 1

    @property
    def started(self) -> bool:
        """True once the transaction has begun (at its first write)."""
        return self._base_position is not None

    def _fix_position(
        self,
        then: str = "",
        params: Sequence[Any] = (),
        *,
        before: str = "",
        before_params: Sequence[Any] = (),
    ) -> tuple[Any, ...] | None:
        """Begin the transaction with `fix_position()`; run the statements `then` in the same round trip.

        `before` runs between BEGIN and `fix_position()`: the stream locks, which must be granted
        before the transaction takes its id (see SQL_LOCK_STREAM). Returns the first row of the
        last statement of `then` (None without `then`).
        """
        cursor = self._cursor
        if self._base_position is None:
            micros = _micros(self.store.clock())
            cursor.execute(
                *core.begin_message(self.store.settings, micros, then, params, before, before_params)
            )
            cursor.nextset()  # past BEGIN
            if before:
                cursor.nextset()  # past the locks
            self._base_position, self._recorded_at = core.fixed_position(cursor.fetchone())
        elif before or then:
            cursor.execute(*core.later_message(then, params, before, before_params))
        else:
            return None
        while cursor.nextset():
            pass
        return cursor.fetchone()

    def _lock_streams(self, streams: list[str]) -> None:
        """Lock the streams now, in a deadlock-free order (SQL_LOCK_STREAMS), and begin the transaction
        after the locks when it has not begun: its appends to them can then never meet a
        `WriteOrderConflict`."""
        if streams:
            self._fix_position(before=q.EXECUTE_LOCK_MANY, before_params=(self.store.clock_lock_key, streams))

    def _append_encoded(
        self, stream: str, batch: Sequence[EncodedEvent], expected: ExpectedVersion
    ) -> AppendResult:
        core.check_room(self._next_index, len(batch))
        # The stream's lock first, then (in a new transaction) the position, then the tip.
        then, params, before, before_params = core.tip_message(self.store.settings, stream, batch)
        row = self._fix_position(then, params, before=before, before_params=before_params)
        verdict = core.judge_tip(stream, batch, expected, row, self._base_position)
        if verdict.done is not None:
            return verdict.done
        actual = verdict.actual
        if verdict.conflict:
            retry = resolve_retry(stream, batch, expected, self._find_events(batch))
            if retry is not None:
                return retry
            raise WrongExpectedVersion(stream, expected, actual)
        assert self._base_position is not None and row is not None
        start = self._base_position + self._next_index
        # The hash chain, and SQL_INSERT_MANY's JSON (or SQL_INSERT_ONE's parameters).
        insert = core.plan_insert(stream, batch, actual, row[1], start, self._recorded_at)
        statements = [insert.statement]
        if self.commit_with_append:
            statements.append(self.store.commit_and_notify)
        try:
            self._cursor.execute("; ".join(statements), insert.params)  # one round trip
        except psycopg.errors.UniqueViolation as error:
            # The stream is locked, so only an event id recorded elsewhere gets here. This
            # transaction is aborted now: look on another connection (the clash is committed).
            if core.is_id_clash(error):
                resolve_retry(stream, batch, expected, self.store.find_events([e.event_id for e in batch]))
            raise
        self._next_index += len(batch)
        self.appended = True
        self.committed = self.commit_with_append
        return insert.result

    def commit(self) -> None:
        self._cursor.execute(self.store.commit_and_notify if self.appended else "COMMIT")
        self.committed = True

    def _find_events(self, batch: Sequence[EncodedEvent]) -> list[ExistingEvent]:
        """On this transaction's connection, so that its own earlier appends count."""
        rows = self._connection.execute(q.SQL_FIND_EVENTS, ([e.event_id for e in batch],)).fetchall()
        return core.existing_events(rows)

    def _save_checkpoint(self, name: str, position: int) -> None:
        self.connection.execute(q.SQL_SAVE_CHECKPOINT, (name, position, self.store.clock()))

    def _recorded_events(self, result: AppendResult) -> list[RecordedEvent]:
        """Read back through this transaction's connection: the events are not committed yet, and
        the store's own reads (other connections, below the read barrier) cannot see them."""
        rows = self._connection.execute(
            q.SQL_READ_OWN_APPEND, (result.global_positions[0], result.global_positions[-1])
        ).fetchall()
        return _to_recorded_page(rows)


class _Listener:
    """A background LISTEN connection; `generation` rises with every notification or reconnect."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._changed = threading.Condition()
        self.generation = 0
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"chronik-listen-{store.schema}", daemon=True)
        self._thread.start()

    def _bump(self) -> None:
        with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._store.conninfo, **self._store.connect_kwargs) as connection:
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._store.channel)))
                    self.listening.set()
                    self._bump()  # anything committed while we were not listening: look again
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=0.25):
                            self._bump()
            except psycopg.Error:
                self.listening.clear()
                self._bump()
                self._stop.wait(0.2)

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until `generation` differs from `seen`; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.generation != seen, timeout)

    def close(self) -> None:
        self._stop.set()
        self._bump()
        self._thread.join(timeout=2)


class PostgresStore(EventStore):
    """`postgresql://user@host:port/db?schema=NAME`. Other query parameters go to libpq.

    Pool options in the URL: `pool_min_size` (default 1), `pool_max_size` (default 8) and
    `pool_timeout` (seconds to wait for a connection before `StoreUnavailable`, default 10).
    `lock_timeout` (seconds, default 0 = wait as long as it takes, PostgreSQL's own default): how
    long a statement of this store waits for a lock another connection holds (a migration's
    `LOCK TABLE`, a long unit of work on the same stream) before it fails with a retryable
    `StoreUnavailable` naming the lock timeout; the unit of work is rolled back whole. It is the
    counterpart of SQLite's `busy_timeout`: a worker that must not hang behind a busy database
    sets it and retries.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        pool_min_size: int = 1,
        pool_max_size: int = 8,
        pool_timeout: float = 10.0,
        lock_timeout: float = 0.0,
    ) -> None:
        super().__init__(clock=clock, max_event_bytes=max_event_bytes)
        settings = PostgresSettings.create(conninfo, schema=schema, lock_timeout=lock_timeout)
        self.settings = settings
        self.conninfo, self.schema, self.url, self.channel = conninfo, schema, settings.url, settings.channel
        self.clock_lock_key, self.writer_lock_key = settings.clock_lock_key, settings.writer_lock_key
        self._barrier_params = settings.barrier_params
        self._barrier = WritersBarrier(settings)
        self.commit_and_notify = settings.commit_and_notify
        self.connect_kwargs: dict[str, Any] = settings.connect_kwargs
        # Test-only: read without the visibility barrier, to show what it prevents. Never in production.
        self.unsafe_no_read_barrier = False
        self._local = threading.local()
        self._listener: _Listener | None = None
        self._listener_lock = threading.Lock()
        self._closed = False
        self._migrate()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            kwargs=self.connect_kwargs,
            min_size=pool_min_size,
            max_size=settings.pool_size(pool_min_size, pool_max_size),
            timeout=pool_timeout,
            name=f"chronik-{schema}",
            num_workers=1,
            configure=self._prepare_statements,
            open=True,
        )

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> PostgresStore:
        conninfo, options = core.parse_url(url)
        return cls(conninfo, clock=clock, max_event_bytes=max_event_bytes, **options)

    # -- connections and errors -------------------------------------------------------------------

    @staticmethod
    def _prepare_statements(connection: psycopg.Connection[Any]) -> None:
        for statement in q.PREPARE_STATEMENTS:
            connection.execute(statement)

    @contextlib.contextmanager
    def _unavailable_as_error(self, what: str) -> Iterator[None]:
        """Turn a lost connection into `StoreUnavailable`, and weed out the pool's dead connections."""
        try:
            yield
        except _UNAVAILABLE as error:
            self._check_pool()
            raise self.settings.unavailable(what, error) from error

    def _check_pool(self) -> None:
        """Replace the pool's idle connections that died with the one that just failed."""
        if not self._closed:
            with contextlib.suppress(Exception):
                self._pool.check()

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read. A read changes nothing, so one that lost its connection is tried once more
        on a fresh one (after a server restart every idle connection of the pool is dead); writes
        are never retried here: their outcome may be unknown, the caller decides."""
        return self._read(lambda connection: connection.execute(statement, params).fetchall())

    def _prepared_rows(self, statement: str, params: Sequence[Any]) -> list[list[tuple[Any, ...]]]:
        """Run a message of `EXECUTE`s of this store's prepared statements (`PREPARE_STATEMENTS`),
        parameters bound on the client (an `EXECUTE` takes no server-bound ones); the rows of each
        statement. The server neither parses nor plans the statements again, and several travel
        in one round trip. Retried like `_rows`."""

        def run(connection: psycopg.Connection[Any]) -> list[list[tuple[Any, ...]]]:
            cursor = psycopg.ClientCursor(connection)
            cursor.execute(statement, params)
            results = [cursor.fetchall()]
            while cursor.nextset():
                results.append(cursor.fetchall())
            return results

        return self._read(run)

    def _read(self, run: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        if self._closed:
            raise ChronikError(f"{self!r} is closed")
        try:
            with self._pool.connection() as connection:
                return run(connection)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._check_pool()
        with self._unavailable_as_error("read"), self._pool.connection() as connection:
            return run(connection)

    def _migrate(self) -> None:
        core.migrate(self.settings, self.clock)

    @contextlib.contextmanager
    def pooled_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit, this schema on the search_path) for the layers above the
        store that keep their own tables here (consumer groups, projections): they open their own
        transactions on it (`connection.transaction()`). Never for appending events: that is what
        `transaction()` is for (an append must begin with `fix_position()`). A lost connection
        raises `StoreUnavailable`."""
        if self._closed:
            raise ChronikError(f"{self!r} is closed")
        with self._unavailable_as_error("connection"), self._pool.connection() as connection:
            yield connection

    def close(self) -> None:
        self._closed = True
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._pool.close()

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PostgresUnitOfWork]:
        if getattr(self._local, "active", False):
            raise ChronikError("a unit of work is already open on this thread; units of work do not nest")
        if self._closed:
            raise ChronikError(f"{self!r} is closed")
        self._local.active = True
        try:
            with self._unavailable_as_error("transaction"), self._pool.connection() as connection:
                # The transaction begins at the unit of work's first write (`_fix_position`).
                uow = PostgresUnitOfWork(self, connection)
                try:
                    yield uow
                    uow.ensure_not_aborted()
                except BaseException:
                    if uow.started and not connection.closed:
                        with contextlib.suppress(psycopg.Error):
                            connection.execute("ROLLBACK")
                    uow.finished(committed=uow.committed)  # a COMMIT sent with the insert stands
                    raise
                if uow.started and not uow.committed:
                    try:
                        uow.commit()
                    except BaseException:
                        uow.finished(committed=False)
                        raise
                uow.finished(committed=True)
        finally:
            self._local.active = False
        if uow.appended:
            self._barrier.note_committed(uow.last_position)  # read your own writes

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """One append, one transaction, two round trips: BEGIN with the stream lock, then the
        insert with the COMMIT. With append hooks the COMMIT waits for them (a third round trip):
        they run in the append's transaction, before it commits."""
        with self.transaction() as uow:
            uow.commit_with_append = not self._append_hooks
            return uow.append(stream, events, expected_version)

    # -- reading ------------------------------------------------------------------------------

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
        statement, params = core.read_stream_query(
            stream,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            limit=limit,
            recorded_until=recorded_until,
            occurred_until=occurred_until,
        )
        rows = self._rows(statement, params)
        if not rows and self._rows(q.SQL_STREAM_VERSION, (stream,))[0][0] is None:
            raise StreamNotFound(stream)
        return _to_recorded_page(rows)

    def read_stream_payloads(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[EventPayload]:
        """Hydration's read: four columns, one prepared statement, and the stream's existence in
        the same round trip (see SQL_STREAM_EXISTS). Time-travel reads take the general path."""
        if recorded_until is not None or occurred_until is not None:
            return super().read_stream_payloads(
                stream,
                from_version=from_version,
                to_version=to_version,
                recorded_until=recorded_until,
                occurred_until=occurred_until,
            )
        params = core.payloads_params(stream, from_version, to_version)
        rows, exists = self._prepared_rows(q.EXECUTE_READ_PAYLOADS, params)
        if not rows and not exists[0][0]:
            raise StreamNotFound(stream)
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
        plan = core.plan_read_all(from_position, to_position, categories, event_types, limit)
        if self.unsafe_no_read_barrier:
            return _to_recorded_page(self._rows(*plan.unsafe()))

        def read_page() -> list[tuple[Any, ...]]:
            prepared, statement, params = plan.page(self._barrier.value)
            return self._prepared_rows(statement, params)[0] if prepared else self._rows(statement, params)

        rows = read_page()
        # Found nothing new, or not yet up to what this process itself committed: look again.
        look, at_once = self._barrier.page_is_short(rows, from_position, to_position, plan.limit)
        if look and self._refresh_writers_barrier(force=at_once):
            rows = read_page()
        return _to_recorded_page(rows)

    def head_position(self) -> int:
        if self.unsafe_no_read_barrier:
            return int(self._rows(q.SQL_HEAD_POSITION_UNSAFE)[0][0])
        head = int(self._rows(q.SQL_HEAD_POSITION, (self._barrier.value,))[0][0])
        if self._refresh_writers_barrier(force=self._barrier.head_is_behind(head)):
            head = int(self._rows(q.SQL_HEAD_POSITION, (self._barrier.value,))[0][0])
        return head

    def _refresh_writers_barrier(self, *, force: bool = False) -> bool:
        """Recompute the writers' barrier (see SQL_READ_BARRIER) in its own statement, unless that
        was done less than READ_BARRIER_REFRESH seconds ago (and not `force`); True if it rose."""
        if not self._barrier.due(force=force):
            return False
        return self._barrier.rise(int(self._rows(q.SQL_WRITERS_BARRIER, self._barrier_params)[0][0]))

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Woken by NOTIFY at each append's commit; then re-reads the barrier until it has passed.

        A notification can arrive while an older transaction still holds the barrier back (it
        will notify at its own commit) or a transaction that will not notify (a rollback, another
        program) holds it: after a notification that did not suffice, poll with a growing pause.
        """
        deadline = time.monotonic() + timeout
        listener = self._start_listener()
        listener.listening.wait(max(0.0, min(timeout, 5.0)))
        pause: float | None = None
        while True:
            seen = listener.generation
            if self.head_position() > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if pause is None:
                if listener.wait(seen, min(remaining, 1.0)):
                    pause = 0.001
            else:
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.05)

    def _start_listener(self) -> _Listener:
        with self._listener_lock:
            if self._closed:
                raise ChronikError(f"{self!r} is closed")
            if self._listener is None:
                self._listener = _Listener(self)
            return self._listener

    def stream_version(self, stream: str) -> int | None:
        check_stream_name(stream)
        version = self._rows(q.SQL_STREAM_VERSION, (stream,))[0][0]
        return None if version is None else int(version)

    def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        return core.stream_infos(self._rows(q.SQL_LIST_STREAMS, core.list_streams_params(prefix, limit)))

    def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]:
        return core.in_given_order(self._rows(q.SQL_FIND_EVENTS, (list(event_ids),)), event_ids)

    def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        return _to_recorded_page(self._rows(q.SQL_READ_CORRELATED, (correlation_id,)))

    # -- checkpoints and snapshots -------------------------------------------------------------

    def load_checkpoint(self, name: str) -> int | None:
        rows = self._rows(q.SQL_LOAD_CHECKPOINT, (name,))
        return int(rows[0][0]) if rows else None

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._unavailable_as_error("snapshot write"), self._pool.connection() as connection:
            connection.execute(q.SQL_SAVE_SNAPSHOT, core.snapshot_params(snapshot))

    def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        params = core.load_snapshot_params(stream, schema_version, at_or_before)
        return core.snapshot_from(
            stream, schema_version, self._prepared_rows(q.EXECUTE_LOAD_SNAPSHOT, params)[0]
        )

    def delete_snapshots(self, stream: str | None = None) -> int:
        with self._unavailable_as_error("snapshot delete"), self._pool.connection() as connection:
            if stream is None:
                cursor = connection.execute(q.SQL_DELETE_ALL_SNAPSHOTS)
            else:
                cursor = connection.execute(q.SQL_DELETE_SNAPSHOTS, (stream,))
            return cursor.rowcount
