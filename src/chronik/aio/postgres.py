"""`postgresql://` on asyncio: psycopg's async connections and `AsyncConnectionPool`, natively.

Every guarantee of the synchronous store (`chronik/store/postgres.py`'s docstring) holds here,
from the same statements (`postgres_sql.py`) and the same decisions (`postgres_core.py`), which
both stores call; only the waiting differs:

* **Positions** come from the transaction id through `fix_position()`, and the stream's lock is
  granted before it, in the same first message (`core.begin_message`); a unit of work appending
  to a further stream after its position was fixed checks the tip (`core.judge_tip`:
  `WriteOrderConflict`).
* **The read barrier**: `read_all` and `head_position` read below it, refreshed by the same
  rules, with read-your-own-writes shared with every store object of the process
  (`core.WritersBarrier`).
* **Idempotent retry** through `resolve_retry`, on the conflict path only; **NOTIFY after
  COMMIT** in the append's last message; **connection loss** raises `StoreUnavailable` (a read is
  tried once more by itself, a write never).
* **Waiting** (`wait_for_events`): one LISTEN connection per store, a task on the loop; every
  waiting task shares one watcher of the head (`_NotifiedWatch`), which looks again at each
  notification, then with a growing pause while the barrier holds back, and every second anyway.
* **Cancellation** of a task inside a statement: psycopg cancels the statement on the server and
  the unit of work is rolled back; an append whose COMMIT was already sent may have been
  recorded: re-send it with the same event ids.

Append hooks (inline projections, synchronous code on a synchronous connection) do not run here;
a process that needs them appends through the synchronous store (or `chronik.aio.ThreadedStore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from chronik.aio.store import AsyncEventStore, AsyncUnitOfWork, CheckingUnitOfWork, HeadWatch
from chronik.clock import Clock
from chronik.errors import ChronikError, StreamNotFound, WrongExpectedVersion
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
from chronik.store import url_options
from chronik.store.contract import (
    AppendResult,
    EventPayload,
    ExistingEvent,
    Snapshot,
    StreamInfo,
    resolve_retry,
)

_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
_T = TypeVar("_T")
Connection = psycopg.AsyncConnection[Any]


class AsyncPostgresUnitOfWork(CheckingUnitOfWork):
    """One PostgreSQL transaction on one pooled async connection; it begins at its first write."""

    store: AsyncPostgresStore

    def __init__(self, store: AsyncPostgresStore, connection: Connection) -> None:
        super().__init__(store)
        self._connection = connection
        # Parameters bound on the client: several statements travel in one message, one round trip.
        self._cursor = psycopg.AsyncClientCursor(connection)
        self._base_position: int | None = None  # transaction id << 20, once fixed
        self._recorded_at = core.EPOCH
        self._next_index = 0  # index within the transaction of the next event
        self.appended = False
        self.commit_with_append = False  # `store.append`: COMMIT travels with the insert
        self.committed = False

    async def connection(self) -> Connection:
        """The connection inside the transaction, for SQL that must commit with the events; asking
        for it fixes the transaction's place in the global order first (`fix_position()`)."""
        await self._fix_position()
        return self._connection

    @property
    def last_position(self) -> int:
        return (self._base_position or 0) + self._next_index - 1

    @property
    def started(self) -> bool:
        return self._base_position is not None

    async def _fix_position(
        self,
        then: str = "",
        params: Sequence[Any] = (),
        *,
        before: str = "",
        before_params: Sequence[Any] = (),
    ) -> tuple[Any, ...] | None:
        """As `PostgresUnitOfWork._fix_position`: begin with the locks `before`, `fix_position()`
        and the statements `then` in one round trip; the first row of `then`'s last statement."""
        cursor = self._cursor
        if self._base_position is None:
            micros = core.micros(self.store.clock())
            await cursor.execute(
                *core.begin_message(self.store.settings, micros, then, params, before, before_params)
            )
            cursor.nextset()  # past BEGIN
            if before:
                cursor.nextset()  # past the locks
            self._base_position, self._recorded_at = core.fixed_position(await cursor.fetchone())
        elif before or then:
            await cursor.execute(*core.later_message(then, params, before, before_params))
        else:
            return None
        while cursor.nextset():
            pass
        return await cursor.fetchone()

    async def _lock_streams(self, streams: list[str]) -> None:
        if streams:
            await self._fix_position(
                before=q.EXECUTE_LOCK_MANY, before_params=(self.store.settings.clock_lock_key, streams)
            )

    async def _append_encoded(
        self, stream: str, batch: Sequence[EncodedEvent], expected: ExpectedVersion
    ) -> AppendResult:
        core.check_room(self._next_index, len(batch))
        # The stream's lock first, then (in a new transaction) the position, then the tip.
        then, params, before, before_params = core.tip_message(self.store.settings, stream, batch)
        row = await self._fix_position(then, params, before=before, before_params=before_params)
        verdict = core.judge_tip(stream, batch, expected, row, self._base_position)
        if verdict.done is not None:
            return verdict.done
        if verdict.conflict:
            found = await self._find_events(batch)
            retried = resolve_retry(stream, batch, expected, found)
            if retried is None:
                raise WrongExpectedVersion(stream, expected, verdict.actual)
            return retried
        assert self._base_position is not None and row is not None
        first = self._base_position + self._next_index
        insert = core.plan_insert(stream, batch, verdict.actual, row[1], first, self._recorded_at)
        message = insert.statement
        if self.commit_with_append:
            message += "; " + self.store.settings.commit_and_notify
        try:
            await self._cursor.execute(message, insert.params)  # one round trip
        except psycopg.errors.UniqueViolation as error:
            # An event id recorded elsewhere; this transaction is aborted: look on another connection.
            if core.is_id_clash(error):
                resolve_retry(
                    stream, batch, expected, await self.store.find_events([e.event_id for e in batch])
                )
            raise
        self._next_index += len(batch)
        self.appended = True
        self.committed = self.commit_with_append
        return insert.result

    async def commit(self) -> None:
        await self._cursor.execute(self.store.settings.commit_and_notify if self.appended else "COMMIT")
        self.committed = True

    async def _find_events(self, batch: Sequence[EncodedEvent]) -> list[ExistingEvent]:
        """On this transaction's connection, so that its own earlier appends count."""
        cursor = await self._connection.execute(q.SQL_FIND_EVENTS, ([e.event_id for e in batch],))
        return core.existing_events(await cursor.fetchall())

    async def _save_checkpoint(self, name: str, position: int) -> None:
        connection = await self.connection()
        await connection.execute(q.SQL_SAVE_CHECKPOINT, (name, position, self.store.clock()))


class _Listener:
    """The LISTEN connection, a task on the store's loop: every notification (and every
    reconnect, after which anything may have been missed) wakes the watcher."""

    def __init__(self, store: AsyncPostgresStore, watch: _NotifiedWatch) -> None:
        self._store = store
        self._watch = watch
        self.listening = False
        self._task = asyncio.create_task(self._run(), name=f"chronik-listen-{store.settings.schema}")

    async def _run(self) -> None:
        settings = self._store.settings
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    settings.conninfo, **settings.connect_kwargs
                ) as connection:
                    await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(settings.channel)))
                    self.listening = True
                    self._watch.notified()  # anything committed while we were not listening: look again
                    async for _ in connection.notifies():
                        self._watch.notified()
            except psycopg.Error:
                self.listening = False
                self._watch.notified()
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class _NotifiedWatch(HeadWatch):
    """Looks at the head at each notification; after a notification that did not raise it (an
    older writer still holds the barrier back), again with a growing pause (1 ms to 50 ms); and
    every second anyway (a transaction that does not notify: another program, a lost message)."""

    def __init__(self, store: AsyncPostgresStore) -> None:
        super().__init__(store.head_position)
        self._store = store
        self._listener: _Listener | None = None
        self._notified = False
        self._backoff: float | None = None

    def notified(self) -> None:
        self._notified = True
        self.poke()

    async def pause(self, rose: bool) -> None:
        if self._listener is None:
            self._listener = _Listener(self._store, self)
        if rose:
            self._backoff = None
        if self._backoff is None:
            # Until the LISTEN is in place, a notification could be missed: look often.
            await self.wait_poked(1.0 if self._listener.listening else 0.05)
        else:
            await self.wait_poked(self._backoff)
            self._backoff = min(self._backoff * 2, 0.05)
        if self._notified:
            self._notified = False
            self._backoff = self._backoff or 0.001

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await super().close()


class AsyncPostgresStore(AsyncEventStore):
    """`postgresql://user@host:port/db?schema=NAME`, the same URL options as `PostgresStore`.

    Open it with `await chronik.aio.open_store(url)` (or `await AsyncPostgresStore.open(url)`),
    on the event loop that will use it.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = core.DEFAULT_SCHEMA,
        clock: Clock | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        pool_min_size: int = 1,
        pool_max_size: int = 8,
        pool_timeout: float = 10.0,
        lock_timeout: float = 0.0,
    ) -> None:
        """Not yet usable: `open` migrates the schema and opens the pool."""
        super().__init__(clock=clock, max_event_bytes=max_event_bytes)
        self.settings = core.PostgresSettings.create(conninfo, schema=schema, lock_timeout=lock_timeout)
        self.url = self.settings.url
        self._barrier = core.WritersBarrier(self.settings)
        self._watch = _NotifiedWatch(self)
        self._closed = False
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            kwargs=self.settings.connect_kwargs,
            min_size=pool_min_size,
            max_size=self.settings.pool_size(pool_min_size, pool_max_size),
            timeout=pool_timeout,
            name=f"chronik-aio-{schema}",
            num_workers=1,
            configure=self._prepare_statements,
            open=False,
        )

    @classmethod
    async def open(cls, url: str, *, clock: Clock | None = None) -> AsyncPostgresStore:
        """Parse the URL as `chronik.open_store` does, migrate the schema (once, on a thread: it
        runs once per open), and open the pool."""
        _, _, max_event_bytes = url_options(url)
        conninfo, options = core.parse_url(url)
        store = cls(conninfo, clock=clock, max_event_bytes=max_event_bytes, **options)
        await asyncio.to_thread(core.migrate, store.settings, store.clock)
        await store._pool.open()
        return store

    # -- connections and errors ---------------------------------------------------------------

    @staticmethod
    async def _prepare_statements(connection: Connection) -> None:
        for statement in q.PREPARE_STATEMENTS:
            await connection.execute(statement)

    @contextlib.asynccontextmanager
    async def _unavailable_as_error(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except _UNAVAILABLE as error:
            await self._check_pool()
            raise self.settings.unavailable(what, error) from error

    async def _check_pool(self) -> None:
        if not self._closed:
            with contextlib.suppress(Exception):
                await self._pool.check()

    def _check_open(self) -> None:
        if self._closed:
            raise ChronikError(f"{self!r} is closed")

    async def _read(self, run: Callable[[Connection], Awaitable[_T]]) -> _T:
        """A read: one that lost its connection is tried once more on a fresh one (it changes
        nothing); writes never are (their outcome may be unknown)."""
        self._check_open()
        try:
            async with self._pool.connection() as connection:
                return await run(connection)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            await self._check_pool()
        async with self._unavailable_as_error("read"), self._pool.connection() as connection:
            return await run(connection)

    async def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async def run(connection: Connection) -> list[tuple[Any, ...]]:
            cursor = await connection.execute(statement, params)
            return await cursor.fetchall()

        return await self._read(run)

    async def _prepared_rows(self, statement: str, params: Sequence[Any]) -> list[list[tuple[Any, ...]]]:
        """A message of `EXECUTE`s of the prepared statements, client-bound; each one's rows."""

        async def run(connection: Connection) -> list[list[tuple[Any, ...]]]:
            cursor = psycopg.AsyncClientCursor(connection)
            await cursor.execute(statement, params)
            results = [await cursor.fetchall()]
            while cursor.nextset():
                results.append(await cursor.fetchall())
            return results

        return await self._read(run)

    async def _write(self, statement: str, params: Sequence[Any] = ()) -> int:
        """A statement that changes something (snapshots): never tried twice; its row count."""
        self._check_open()
        async with self._unavailable_as_error("write"), self._pool.connection() as connection:
            cursor = await connection.execute(statement, params)
            return cursor.rowcount

    @contextlib.asynccontextmanager
    async def pooled_connection(self) -> AsyncIterator[Connection]:
        """A pooled async connection (autocommit, this schema on the search_path) for the layers
        above that keep their own tables here. Never for appending events (`transaction()` is)."""
        self._check_open()
        async with self._unavailable_as_error("connection"), self._pool.connection() as connection:
            yield connection

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()
        await self._pool.close()

    # -- writing ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncUnitOfWork]:
        self._check_open()
        async with self._unavailable_as_error("transaction"), self._pool.connection() as connection:
            uow = AsyncPostgresUnitOfWork(self, connection)
            try:
                yield uow
                uow.ensure_not_aborted()
            except BaseException:
                if uow.started and not connection.closed:
                    with contextlib.suppress(psycopg.Error):
                        await connection.execute("ROLLBACK")
                raise
            if uow.started and not uow.committed:
                await uow.commit()
        if uow.appended:
            self._barrier.note_committed(uow.last_position)  # read your own writes
            self._watch.poke()

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent] | NewEvent,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """One append, one transaction, two round trips: BEGIN with the stream lock and the tip,
        then the insert with the COMMIT and the NOTIFY."""
        async with self.transaction() as uow:
            assert isinstance(uow, AsyncPostgresUnitOfWork)
            uow.commit_with_append = True
            return await uow.append(stream, events, expected_version)

    # -- reading ------------------------------------------------------------------------------

    async def read_stream(
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
        rows = await self._rows(statement, params)
        if not rows and (await self._rows(q.SQL_STREAM_VERSION, (stream,)))[0][0] is None:
            raise StreamNotFound(stream)
        return core.to_recorded_page(rows)

    async def read_stream_payloads(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
        occurred_until: datetime | None = None,
    ) -> list[EventPayload]:
        """Four columns and the stream's existence in one round trip; time travel reads the
        general way."""
        if recorded_until is not None or occurred_until is not None:
            events = await self.read_stream(
                stream,
                from_version=from_version,
                to_version=to_version,
                recorded_until=recorded_until,
                occurred_until=occurred_until,
            )
            return [(e.stream_version, e.type, e.schema_version, e.json_data) for e in events]
        params = core.payloads_params(stream, from_version, to_version)
        rows, exists = await self._prepared_rows(q.EXECUTE_READ_PAYLOADS, params)
        if not rows and not exists[0][0]:
            raise StreamNotFound(stream)
        return rows

    async def read_all(
        self,
        from_position: int = 0,
        *,
        to_position: int | None = None,
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        plan = core.plan_read_all(from_position, to_position, categories, event_types, limit)

        async def read_page() -> list[tuple[Any, ...]]:
            prepared, statement, params = plan.page(self._barrier.value)
            if prepared:
                return (await self._prepared_rows(statement, params))[0]
            return await self._rows(statement, params)

        rows = await read_page()
        look, at_once = self._barrier.page_is_short(rows, from_position, to_position, plan.limit)
        if look and await self._refresh_writers_barrier(force=at_once):
            rows = await read_page()
        return core.to_recorded_page(rows)

    async def head_position(self) -> int:
        head = int((await self._rows(q.SQL_HEAD_POSITION, (self._barrier.value,)))[0][0])
        if await self._refresh_writers_barrier(force=self._barrier.head_is_behind(head)):
            head = int((await self._rows(q.SQL_HEAD_POSITION, (self._barrier.value,)))[0][0])
        return head

    async def _refresh_writers_barrier(self, *, force: bool = False) -> bool:
        if not self._barrier.due(force=force):
            return False
        rows = await self._rows(q.SQL_WRITERS_BARRIER, self.settings.barrier_params)
        return self._barrier.rise(int(rows[0][0]))

    async def stream_version(self, stream: str) -> int | None:
        check_stream_name(stream)
        version = (await self._rows(q.SQL_STREAM_VERSION, (stream,)))[0][0]
        return None if version is None else int(version)

    async def list_streams(self, *, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        return core.stream_infos(
            await self._rows(q.SQL_LIST_STREAMS, core.list_streams_params(prefix, limit))
        )

    async def find_events(self, event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]:
        return core.in_given_order(await self._rows(q.SQL_FIND_EVENTS, (list(event_ids),)), event_ids)

    async def read_correlated(self, correlation_id: str) -> list[RecordedEvent]:
        return core.to_recorded_page(await self._rows(q.SQL_READ_CORRELATED, (correlation_id,)))

    # -- checkpoints and snapshots -------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> int | None:
        rows = await self._rows(q.SQL_LOAD_CHECKPOINT, (name,))
        return int(rows[0][0]) if rows else None

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._write(q.SQL_SAVE_SNAPSHOT, core.snapshot_params(snapshot))

    async def load_snapshot(
        self, stream: str, *, schema_version: int, at_or_before: int | None = None
    ) -> Snapshot | None:
        params = core.load_snapshot_params(stream, schema_version, at_or_before)
        rows = (await self._prepared_rows(q.EXECUTE_LOAD_SNAPSHOT, params))[0]
        return core.snapshot_from(stream, schema_version, rows)

    async def delete_snapshots(self, stream: str | None = None) -> int:
        if stream is None:
            return await self._write(q.SQL_DELETE_ALL_SNAPSHOTS)
        return await self._write(q.SQL_DELETE_SNAPSHOTS, (stream,))
