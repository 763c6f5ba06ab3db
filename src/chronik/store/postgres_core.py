"""The PostgreSQL backend's pure parts, shared by the synchronous store (`postgres.py`) and its
asyncio twin (`chronik.aio.postgres`): everything that decides, nothing that waits for the server.

The two stores differ only in how they send a message and wait for its answer (psycopg's blocking
or async connections). What they send, and what an answer means, is decided here, once, so that
the guarantees of `postgres.py`'s docstring hold the same on both faces:

* `PostgresSettings`: the URL, the schema, the lock keys, the channel, the connection options.
* `begin_message` / `fixed_position`: the first message of a writing transaction (`BEGIN`, the
  stream locks, `fix_position()`, then the caller's statements) and what its answer fixes.
* `judge_tip` / `plan_insert`: an append's decision from the stream's tip row (expected version,
  retry, write order) and, when it goes ahead, the hash chain and the insert statement.
* `WritersBarrier` / `plan_read_all`: the read barrier's bookkeeping (the last writers' barrier,
  when to look again, read-your-own-writes) and the global read's statement.
* `migrate`: the schema, created and migrated once on open (blocking: the async store runs it on
  a thread, once).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, TypedDict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg import sql

from chronik.clock import Clock
from chronik.errors import (
    ChronikError,
    InvalidInput,
    SchemaTooNew,
    StoreUnavailable,
    UnsupportedStoreURL,
    WriteOrderConflict,
    WrongExpectedVersion,
)
from chronik.events.chain import GENESIS, event_hash
from chronik.events.envelope import (
    ANY,
    STREAM_EXISTS,
    EncodedEvent,
    ExpectedVersion,
    RecordedEvent,
    category_of,
    check_stream_name,
    format_timestamp,
)
from chronik.store import postgres_sql as q
from chronik.store.contract import AppendResult, ExistingEvent, Snapshot, StreamInfo, check_expectation

DEFAULT_SCHEMA: Final = "chronik"
SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
READ_BARRIER_REFRESH: Final = 0.05  # seconds: the least time between two looks at the lock table
MAX_POSITION: Final = 2**63 - 1
MAX_VERSION: Final = 2**62
# The latest position each (server, schema) had committed by this process, whichever store object
# (synchronous or asyncio) committed it: see `WritersBarrier.note_committed`.
_COMMITTED: dict[tuple[str, str], int] = {}
_COMMITTED_LOCK = threading.Lock()
_JSON_ENCODER: Final = msgspec.json.Encoder()
# The URL's query parameters that are the store's own; every other one goes to libpq.
_OWN_OPTIONS: Final = frozenset(
    {"schema", "pool_min_size", "pool_max_size", "pool_timeout", "lock_timeout", "max_event_bytes"}
)


def lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory lock key for one purpose in one schema."""
    digest = hashlib.blake2b(f"chronik:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ChronikError(f"the store's clock returned a naive datetime {moment!r}; it must be aware")
    return (moment - EPOCH) // _MICROSECOND


def to_recorded(row: Sequence[Any]) -> RecordedEvent:
    """One row of `EVENT_COLUMNS` (in `RecordedEvent`'s field order) to an event."""
    return msgspec.convert(row, RecordedEvent)


def to_recorded_page(rows: list[tuple[Any, ...]]) -> list[RecordedEvent]:
    """A page of `EVENT_COLUMNS` rows to events in one C call. psycopg has parsed the ids and times
    already, so this gains little over a constructor call per row (0.12 against 0.16 ms per 1,000
    rows, measured); it keeps the row order and the event's field order tied to one place."""
    return msgspec.convert(rows, list[RecordedEvent])


# -- settings -------------------------------------------------------------------------------------


class PostgresOptions(TypedDict, total=False):
    """The store's own URL options (see `PostgresStore`), typed; `parse_url` reads them."""

    schema: str
    pool_min_size: int
    pool_max_size: int
    pool_timeout: float
    lock_timeout: float


def parse_url(url: str) -> tuple[str, PostgresOptions]:
    """`postgresql://...?schema=...&pool_max_size=...&connect_timeout=5` to (libpq conninfo, options).

    The store's own options are taken out of the query; libpq's stay in the conninfo.
    `max_event_bytes` is read by `chronik.open_store` and dropped here.
    """
    parts = urlsplit(url)
    given = dict(parse_qsl(parts.query))
    libpq = [(key, value) for key, value in parse_qsl(parts.query) if key not in _OWN_OPTIONS]
    scheme = "postgresql" if parts.scheme.lower() == "postgres" else parts.scheme
    conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(libpq), ""))
    try:
        options = PostgresOptions(
            schema=given.get("schema", DEFAULT_SCHEMA),
            pool_min_size=int(given.get("pool_min_size", 1)),
            pool_max_size=int(given.get("pool_max_size", 8)),
            pool_timeout=float(given.get("pool_timeout", 10.0)),
            lock_timeout=float(given.get("lock_timeout", 0.0)),
        )
    except ValueError:
        raise UnsupportedStoreURL(
            url, "pool_min_size and pool_max_size are whole numbers; pool_timeout, lock_timeout seconds"
        ) from None
    return conninfo, options


@dataclass(frozen=True)
class PostgresSettings:
    """What a store of one schema on one server sends with every message, derived once."""

    conninfo: str
    schema: str
    url: str  # shown in errors and `repr`: no password
    channel: str  # LISTEN/NOTIFY channel of this schema
    clock_lock_key: int
    writer_lock_key: int
    barrier_params: tuple[int, int]  # the writer lock's key as pg_locks shows it (classid, objid)
    commit_and_notify: str
    connect_kwargs: dict[str, Any] = field(hash=False)

    @classmethod
    def create(cls, conninfo: str, *, schema: str, lock_timeout: float) -> PostgresSettings:
        if not 0 <= lock_timeout <= 2_147_483:  # PostgreSQL's limit (2**31 - 1 ms); also refuses NaN
            raise UnsupportedStoreURL(conninfo, f"lock_timeout is 0 to 2147483 seconds, not {lock_timeout}")
        # Whole milliseconds, at least 1 when any timeout is asked for: 0 means "wait forever".
        lock_timeout_ms = 0 if lock_timeout == 0 else max(1, round(lock_timeout * 1000))
        if not SCHEMA_NAME.fullmatch(schema):
            raise UnsupportedStoreURL(conninfo, f"schema must match {SCHEMA_NAME.pattern}, not {schema!r}")
        parts = urlsplit(conninfo)
        host = parts.hostname or ""
        shown = f"{parts.username}@{host}" if parts.username else host
        port = f":{parts.port}" if parts.port else ""
        channel = f"chronik_{schema}"[:63]
        writer_lock_key = lock_key("writers", schema)
        unsigned = writer_lock_key & 0xFFFFFFFFFFFFFFFF
        return cls(
            conninfo=conninfo,
            schema=schema,
            url=f"{parts.scheme}://{shown}{port}{parts.path}?schema={schema}",
            channel=channel,
            clock_lock_key=lock_key("clock", schema),
            writer_lock_key=writer_lock_key,
            barrier_params=(unsigned >> 32, unsigned & 0xFFFFFFFF),
            # The channel is made of checked characters only, so it can stand in the text as it is.
            commit_and_notify="COMMIT; " + q.SQL_NOTIFY_AFTER_COMMIT.format(channel=f"'{channel}'"),
            connect_kwargs={
                "autocommit": True,
                "options": f"-c search_path={schema} -c TimeZone=UTC -c lock_timeout={lock_timeout_ms}",
                "application_name": f"chronik:{schema}"[:63],  # what pg_stat_activity shows
                # No automatic preparing by psycopg: after any ROLLBACK it would send DEALLOCATE ALL,
                # which drops the statements this store prepares itself (`PREPARE_STATEMENTS`).
                "prepare_threshold": None,
            },
        )

    def pool_size(self, pool_min_size: int, pool_max_size: int) -> int:
        """The pool's largest size: at least 2, since a failed append looks up ids on a second one."""
        return max(pool_max_size, pool_min_size, 2)

    def unavailable(self, what: str, error: Exception) -> StoreUnavailable:
        """The retryable error for a lost connection (server restart, killed backend, no connection)."""
        return StoreUnavailable(
            f"PostgreSQL {what} failed ({type(error).__name__}: {str(error).strip()}); "
            "retry (an append can be re-sent with the same event ids)"
        )


def migrate(settings: PostgresSettings, clock: Clock) -> None:
    """Create the schema and its tables, or migrate them, once even when several processes open it
    at the same time (SQL_MIGRATION_LOCK). Raises `StoreUnavailable` when the server is out of reach."""
    try:
        with (
            psycopg.connect(settings.conninfo, **settings.connect_kwargs) as connection,
            connection.transaction(),
        ):
            connection.execute(q.SQL_MIGRATION_LOCK, (lock_key("migrate", settings.schema),))
            connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(settings.schema))
            )
            connection.execute(q.SQL_CREATE_MIGRATIONS_TABLE)
            row = connection.execute(q.SQL_SCHEMA_VERSION).fetchone()
            found = int(row[0]) if row else 0
            if found > q.SCHEMA_VERSION:
                raise SchemaTooNew(found, q.SCHEMA_VERSION)
            for version in range(found + 1, q.SCHEMA_VERSION + 1):
                for statement in q.MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(q.SQL_RECORD_MIGRATION, (version, clock()))
    except (psycopg.OperationalError, psycopg.InterfaceError) as error:
        raise StoreUnavailable(f"cannot open PostgreSQL store {settings.url}: {error}") from error


# -- appending ------------------------------------------------------------------------------------


def begin_message(
    settings: PostgresSettings,
    clock_micros: int,
    then: str,
    params: Sequence[Any],
    before: str,
    before_params: Sequence[Any],
) -> tuple[str, tuple[Any, ...]]:
    """The first message of a writing transaction: `BEGIN`, the statements `before` (the stream
    locks, granted before the transaction takes its id: see SQL_LOCK_STREAM), `fix_position()`,
    then the statements `then`. Its answer: BEGIN's, `before`'s (if any), `fixed_position`'s row,
    then `then`'s."""
    statement = f"BEGIN; {before + '; ' if before else ''}{q.EXECUTE_FIX}{'; ' + then if then else ''}"
    return statement, (
        *before_params,
        settings.writer_lock_key,
        settings.clock_lock_key,
        clock_micros,
        *params,
    )


def later_message(
    then: str, params: Sequence[Any], before: str, before_params: Sequence[Any]
) -> tuple[str, tuple[Any, ...]]:
    """The same statements in a transaction whose position is fixed already."""
    return "; ".join(part for part in (before, then) if part), (*before_params, *params)


def fixed_position(row: Sequence[Any] | None) -> tuple[int, datetime]:
    """`fix_position()`'s answer: the transaction's first position (id << 20) and its recorded_at."""
    assert row is not None
    transaction_id, recorded_micros = row
    return transaction_id << q.POSITION_SHIFT, EPOCH + timedelta(microseconds=recorded_micros)


def check_room(written: int, adding: int) -> None:
    """A transaction writes at most MAX_EVENTS_PER_TRANSACTION events (the low bits of a position)."""
    if written + adding > q.MAX_EVENTS_PER_TRANSACTION:
        raise InvalidInput(
            f"a unit of work can write at most {q.MAX_EVENTS_PER_TRANSACTION} events on PostgreSQL; "
            f"this one has {written} and the append adds {adding}"
        )


def tip_message(
    settings: PostgresSettings, stream: str, batch: Sequence[EncodedEvent]
) -> tuple[str, tuple[Any, ...], str, tuple[Any, ...]]:
    """(then, params, before, before_params) of an append's first statements: the stream's lock
    (before the position, if the transaction has none yet), then its tip (SQL_STREAM_TIP)."""
    first_id = batch[0].event_id if batch else None
    return q.EXECUTE_TIP, (first_id, stream), q.EXECUTE_LOCK, (stream, settings.clock_lock_key)


class TipVerdict(NamedTuple):
    """What the stream's tip (SQL_STREAM_TIP's row) says about an append."""

    actual: int | None  # the stream's version
    done: AppendResult | None  # an empty batch whose expectation holds: the whole answer
    conflict: bool  # the expectation failed or the first id is recorded: a retry, or WrongExpectedVersion


def judge_tip(
    stream: str,
    batch: Sequence[EncodedEvent],
    expected: ExpectedVersion,
    row: Sequence[Any] | None,
    base_position: int | None,
) -> TipVerdict:
    """Decide an append from its stream's tip row, read under the stream's lock.

    An empty batch only checks the expectation. A conflict is resolved by the caller (it needs the
    recorded ids: `resolve_retry`). Otherwise the append goes ahead, unless the tip was written by a
    transaction with a higher id (one that took this stream's lock after this unit of work took its
    position): going after it would put a higher version at a lower position (`WriteOrderConflict`).
    """
    assert row is not None and base_position is not None
    actual: int | None = row[0]
    if not batch:
        if not check_expectation(stream, expected, actual):
            raise WrongExpectedVersion(stream, expected, actual)
        return TipVerdict(actual, AppendResult(stream, actual, ()), False)
    if not check_expectation(stream, expected, actual) or (expected in (ANY, STREAM_EXISTS) and row[2]):
        return TipVerdict(actual, None, True)
    if row[3] is not None and row[3] >= base_position + q.MAX_EVENTS_PER_TRANSACTION:
        raise WriteOrderConflict(stream)
    return TipVerdict(actual, None, False)


class InsertPlan(NamedTuple):
    statement: str  # EXECUTE_INSERT_ONE or EXECUTE_INSERT_MANY
    params: list[Any]
    result: AppendResult  # what the append answers once the statement succeeded


def plan_insert(
    stream: str,
    batch: Sequence[EncodedEvent],
    actual: int | None,
    tip_hash: str | None,
    start: int,
    recorded_at: datetime,
) -> InsertPlan:
    """The hash chain from the tip, and the insert of the batch at positions `start`, `start + 1`, ...

    One event goes as SQL_INSERT_ONE's parameters, a batch as SQL_INSERT_MANY's JSON array.
    """
    recorded_text = format_timestamp(recorded_at)
    first_version = -1 if actual is None else actual
    previous_hash = GENESIS if actual is None or tip_hash is None else tip_hash
    many = len(batch) > 1
    entries = []
    for index, event in enumerate(batch):
        occurred_text = recorded_text if event.occurred_at is None else format_timestamp(event.occurred_at)
        previous_hash = event_hash(
            previous_hash,
            str(event.event_id),
            stream,
            first_version + 1 + index,
            event.type,
            event.schema_version,
            recorded_text,
            occurred_text,
            event.json_metadata,
            event.json_data,
        )
        if many:
            entries.append(
                {
                    "i": index,
                    "id": event.event_id,
                    "t": event.type,
                    "s": event.schema_version,
                    "d": event.json_data,
                    "m": event.json_metadata,
                    "o": None if event.occurred_at is None else occurred_text,
                    "h": previous_hash,
                }
            )
    result = AppendResult(stream, first_version + len(batch), tuple(range(start, start + len(batch))))
    category = category_of(stream)
    if many:
        json_rows = _JSON_ENCODER.encode(entries).decode()
        params = [start, stream, first_version + 1, category, recorded_at, recorded_at, json_rows]
        return InsertPlan(q.EXECUTE_INSERT_MANY, params, result)
    event = batch[0]
    params = [
        start,
        event.event_id,
        stream,
        first_version + 1,
        category,
        event.type,
        event.schema_version,
        event.json_data,
        event.json_metadata,
        recorded_at,
        recorded_at if event.occurred_at is None else event.occurred_at,
        previous_hash,
    ]
    return InsertPlan(q.EXECUTE_INSERT_ONE, params, result)


def is_id_clash(error: psycopg.errors.UniqueViolation) -> bool:
    """An insert refused because one of its event ids is recorded elsewhere (the stream is locked,
    so a version clash cannot get here): the caller looks the ids up to raise `DuplicateEventId`."""
    return error.diag.constraint_name == "events_event_id_uniq"


def existing_events(rows: Sequence[Sequence[Any]]) -> list[ExistingEvent]:
    """SQL_FIND_EVENTS' rows."""
    return [ExistingEvent(row[0], row[1], row[2], row[3]) for row in rows]


def in_given_order(rows: Sequence[Sequence[Any]], event_ids: Sequence[uuid.UUID]) -> list[ExistingEvent]:
    """SQL_FIND_EVENTS' rows in the order of the ids asked for (`find_events`)."""
    found = {event.event_id: event for event in existing_events(rows)}
    return [found[event_id] for event_id in event_ids if event_id in found]


# -- reading --------------------------------------------------------------------------------------


class WritersBarrier:
    """The read barrier's bookkeeping for one store object (see SQL_READ_BARRIER in postgres_sql.py).

    `value` is the last writers' barrier computed; it only rises and stays safe for every later
    read. It is looked at again when a read found nothing new, at most every READ_BARRIER_REFRESH
    seconds (a look at the lock table costs ~0.5 ms of server time), or at once when a read has not
    reached what this process itself committed (read your own writes, also across the process's
    store objects of one schema, synchronous or asyncio).
    """

    def __init__(self, settings: PostgresSettings) -> None:
        self.value = 0
        self._refreshed_at = -READ_BARRIER_REFRESH
        self._key = (settings.conninfo, settings.schema)
        self._lock = threading.Lock()

    def due(self, *, force: bool = False) -> bool:
        """True if the barrier should be recomputed now (and note that it is being done)."""
        now = time.monotonic()
        if not force and now - self._refreshed_at < READ_BARRIER_REFRESH:
            return False
        self._refreshed_at = now
        return True

    def rise(self, value: int) -> bool:
        """Take a freshly computed barrier; True if it rose."""
        with self._lock:
            if value <= self.value:
                return False
            self.value = value
            return True

    def note_committed(self, position: int) -> None:
        """Remember this process's latest committed position in this schema."""
        with _COMMITTED_LOCK:
            if position > _COMMITTED.get(self._key, 0):
                _COMMITTED[self._key] = position

    def own_committed(self) -> int:
        return _COMMITTED.get(self._key, 0)

    def head_is_behind(self, head: int) -> bool:
        """A head below this process's own last commit: recompute the barrier at once."""
        return head < self.own_committed()

    def page_is_short(
        self, rows: Sequence[Sequence[Any]], from_position: int, to_position: int | None, limit: int | None
    ) -> tuple[bool, bool]:
        """After a page of `read_all`: (look at the barrier again?, at once?). A page that found
        nothing looks again (at most every READ_BARRIER_REFRESH); a page that has not reached what
        this process committed, and had room for more, looks again at once."""
        own = self.own_committed()
        wanted = own if to_position is None else min(own, to_position)
        reached = rows[-1][3] if rows else from_position - 1  # [3]: global_position
        behind_own = reached < wanted and (limit is None or len(rows) < limit)
        return behind_own or not rows, behind_own


class ReadAllPlan(NamedTuple):
    """A `read_all` call's statement, but for the barrier it reads below (`page`)."""

    from_position: int
    filters: str
    filter_params: list[Any]
    last: int
    limit: int | None

    def page(self, barrier: int) -> tuple[bool, str, list[Any]]:
        """(prepared?, statement, parameters) of one read below the writers' `barrier`."""
        if not self.filters:  # the tailing reader's and the catch-up's read: prepared
            return True, q.EXECUTE_READ_ALL, [self.from_position, self.limit, barrier, self.last]
        statement = q.SQL_READ_ALL.format(filters=self.filters)
        return False, statement, [self.from_position, *self.filter_params, self.limit, barrier, self.last]

    def unsafe(self) -> tuple[str, list[Any]]:
        """The same without the barrier, for the test that shows what the barrier prevents."""
        statement = q.SQL_READ_ALL_UNSAFE.format(filters=self.filters)
        return statement, [self.from_position, *self.filter_params, self.last, self.limit]


def plan_read_all(
    from_position: int,
    to_position: int | None,
    categories: Sequence[str] | None,
    event_types: Sequence[str] | None,
    limit: int | None,
) -> ReadAllPlan:
    limit = None if limit is None else max(0, limit)
    last = MAX_POSITION if to_position is None else to_position
    filters = ""
    filter_params: list[Any] = []
    if to_position is not None and (limit is None or categories or event_types):
        # A real upper bound also bounds the inner, ordered scan (see SQL_READ_ALL) when that
        # scan could otherwise walk past it: a read without a limit, or a filtered one (a
        # time-machine build or scratch rebuild of a projection whose types are rare beyond
        # the bound would read the rest of the log to fill its page: 31 ms against 1.6 ms per
        # page on 100k events). An unfiltered page with a limit reads at most `limit` rows
        # anyway, so it keeps the prepared statement (`iter_all`, catch-up and tailing reads:
        # through the general path they ran at a third of the speed, measured in
        # bench/core.py). Never as a constant far above every position: that would bring back
        # the statistics-less misestimate SQL_READ_ALL's comment describes.
        filters += " AND global_position <= %s"
        filter_params.append(to_position)
    if categories:
        filters += " AND category = ANY(%s)"
        filter_params.append(list(categories))
    if event_types:
        filters += " AND event_type = ANY(%s)"
        filter_params.append(list(event_types))
    return ReadAllPlan(from_position, filters, filter_params, last, limit)


def read_stream_query(
    stream: str,
    *,
    from_version: int | None,
    to_version: int | None,
    backwards: bool,
    limit: int | None,
    recorded_until: datetime | None,
    occurred_until: datetime | None,
) -> tuple[str, list[Any]]:
    """`read_stream`'s statement and parameters (the stream name checked)."""
    check_stream_name(stream)
    clauses = ["stream_name = %s"]
    params: list[Any] = [stream]
    low, high = (to_version, from_version) if backwards else (from_version, to_version)
    if low is not None:
        clauses.append("stream_version >= %s")
        params.append(low)
    if high is not None:
        clauses.append("stream_version <= %s")
        params.append(high)
    if recorded_until is not None:
        clauses.append("recorded_at <= %s")
        params.append(recorded_until)
    if occurred_until is not None:
        clauses.append("occurred_at <= %s")
        params.append(occurred_until)
    statement = (
        f"SELECT {q.EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
        f"ORDER BY stream_version {'DESC' if backwards else 'ASC'}"
    )
    if limit is not None:
        statement += " LIMIT %s"
        params.append(max(0, limit))
    return statement, params


def payloads_params(stream: str, from_version: int | None, to_version: int | None) -> tuple[Any, ...]:
    """EXECUTE_READ_PAYLOADS' parameters (the stream name checked)."""
    check_stream_name(stream)
    low = 0 if from_version is None else from_version
    high = MAX_VERSION if to_version is None else to_version
    return (stream, low, high, stream)


def stream_infos(rows: Sequence[Sequence[Any]]) -> list[StreamInfo]:
    """SQL_LIST_STREAMS' rows."""
    return [StreamInfo(row[0], category_of(row[0]), row[1], row[2], row[3], row[4]) for row in rows]


def list_streams_params(prefix: str, limit: int) -> tuple[str, str, int]:
    return (prefix, prefix + "\U0010ffff", max(0, limit))


def snapshot_params(snapshot: Snapshot) -> tuple[Any, ...]:
    """SQL_SAVE_SNAPSHOT's parameters."""
    return (
        snapshot.stream,
        snapshot.schema_version,
        snapshot.stream_version,
        snapshot.aggregate_type,
        snapshot.json_state,
        snapshot.recorded_at,
    )


def load_snapshot_params(stream: str, schema_version: int, at_or_before: int | None) -> tuple[Any, ...]:
    return (stream, schema_version, MAX_VERSION if at_or_before is None else at_or_before)


def snapshot_from(stream: str, schema_version: int, rows: Sequence[Sequence[Any]]) -> Snapshot | None:
    """EXECUTE_LOAD_SNAPSHOT's rows to the snapshot (None: there is none)."""
    if not rows:
        return None
    row = rows[0]
    return Snapshot(
        stream=stream,
        stream_version=row[0],
        aggregate_type=row[1],
        schema_version=schema_version,
        json_state=row[2],
        recorded_at=row[3],
    )
