"""The PostgreSQL backend's schema and statements, each named, each with the guarantee it gives.

Kept apart from `postgres.py` so that the SQL can be read top to bottom as one piece: the
migrations, then the statements in the order an append uses them, then the readers.
"""

from __future__ import annotations

import functools
from typing import Final

SCHEMA_VERSION: Final = 1

# 2**20 events per transaction: the low 20 bits of a position are the index within the transaction.
POSITION_SHIFT: Final = 20
MAX_EVENTS_PER_TRANSACTION: Final = 1 << POSITION_SHIFT

# Migrations run once each, in order, under `SQL_MIGRATION_LOCK`, in the store's schema (search_path).
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE events (
            -- (writing transaction's id << 20) + index within it: see "Global order" in postgres.py
            global_position bigint      PRIMARY KEY,
            event_id        uuid        NOT NULL,
            stream_name     text        COLLATE "C" NOT NULL,  -- byte order, as on SQLite
            stream_version  bigint      NOT NULL,  -- 0-based, no gaps: see events_stream_version_uniq
            category        text        NOT NULL,
            event_type      text        NOT NULL,
            schema_version  integer     NOT NULL,
            data            json        NOT NULL,  -- json, not jsonb: the text is kept byte for byte
            metadata        json        NOT NULL,  -- (the hash chain covers the exact text)
            recorded_at     timestamptz NOT NULL,  -- never decreasing along global_position: fix_position()
            occurred_at     timestamptz NOT NULL,
            event_hash      text        NOT NULL   -- chains to the stream's previous event: events/chain.py
        )""",
        # One event per stream version: the database's last word on a lost race, whatever Python did.
        "CREATE UNIQUE INDEX events_stream_version_uniq ON events (stream_name, stream_version)",
        # An event id is recorded once; a retry is recognized through this index.
        "CREATE UNIQUE INDEX events_event_id_uniq ON events (event_id)",
        "CREATE INDEX events_category_position ON events (category, global_position)",
        """CREATE TABLE checkpoints (
            name        text        PRIMARY KEY,
            position    bigint      NOT NULL,
            updated_at  timestamptz NOT NULL
        )""",
        """CREATE TABLE snapshots (
            stream_name     text        NOT NULL,
            schema_version  integer     NOT NULL,
            stream_version  bigint      NOT NULL,
            aggregate_type  text        NOT NULL,
            state           text        NOT NULL,
            recorded_at     timestamptz NOT NULL,
            PRIMARY KEY (stream_name, schema_version, stream_version)
        )""",
        # The latest recorded_at handed out, in microseconds since 1970. A sequence because setval()
        # is not transactional: the value is visible to the next writer at once, before any commit.
        "CREATE SEQUENCE recorded_at_high_water MINVALUE -9223372036854775807 START -9223372036854775807",
        # Fixes a transaction's place in the global order and its recorded_at, atomically.
        #
        # Guarantee: recorded_at never decreases along global_position. Positions are ordered by
        # transaction id; ids are handed out by the server in increasing order; this function takes
        # the id (pg_current_xact_id() assigns it, and it must be the transaction's first write) and
        # clamps the writer's clock reading to the high-water mark, both under one session-level
        # advisory lock. So a higher id always gets a time >= every lower id's time. The lock is
        # held for this call only (microseconds, no I/O wait), never until commit: writers are not
        # serialized behind it. The exception block releases the lock if anything in between fails.
        #
        # First, though, it registers the transaction as a writer of this schema (a shared lock
        # held until the transaction ends, taken before the transaction has an id): the read
        # barrier (SQL_WRITERS_BARRIER) waits for registered transactions only.
        """CREATE FUNCTION fix_position(writer_key bigint, lock_key bigint, clock_micros bigint,
                                        OUT transaction_id bigint, OUT recorded_micros bigint)
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(writer_key);
            PERFORM pg_advisory_lock(lock_key);
            BEGIN
                transaction_id := pg_current_xact_id()::text::bigint;
                SELECT greatest(last_value, clock_micros) INTO recorded_micros FROM recorded_at_high_water;
                PERFORM setval('recorded_at_high_water', recorded_micros);
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                PERFORM pg_advisory_unlock(lock_key);
                RAISE;
            END;
            PERFORM pg_advisory_unlock(lock_key);
        END
        $$""",
    ),
}

# -- migrations -------------------------------------------------------------------------------

# Guarantee: concurrent processes opening one schema migrate it once. The transaction-level lock
# is taken before anything is read or created, so the second process sees the first's result.
SQL_MIGRATION_LOCK: Final = "SELECT pg_advisory_xact_lock(%s)"
SQL_CREATE_MIGRATIONS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
)
SQL_SCHEMA_VERSION: Final = "SELECT coalesce(max(version), 0) FROM schema_migrations"
SQL_RECORD_MIGRATION: Final = "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)"

# -- appending, in the order a unit of work runs them ---------------------------------------------

# The first statement of every writing transaction (see fix_position() above). It returns the
# transaction id: the transaction's events get positions (id << 20) + 0, 1, 2, ...
SQL_FIX_POSITION: Final = "SELECT transaction_id, recorded_micros FROM fix_position(%s, %s, %s)"

# Guarantee: writers of one stream take turns; writers of different streams do not wait for each
# other. A transaction-level advisory lock on the stream name's 64-bit hash (seeded per schema) is
# held until commit or rollback; two names that share a hash only wait for each other needlessly.
# No row is written for it: an append writes only its events.
#
# Guarantee: within one stream, global order equals version order. A transaction's positions come
# from its id (fix_position), so the stream's lock must be granted BEFORE the id is taken: the
# previous holder had its id before it committed and released the lock, so the next holder's id,
# taken after, is higher, and its versions land at higher positions. An append's first message is
# therefore `BEGIN; lock the stream; fix_position(); read the tip`. A unit of work whose position
# is already fixed when it appends to a further stream takes that stream's lock and compares the
# tip's position with its own range: a tip above it was written by a later transaction, and the
# append is refused with WriteOrderConflict (nothing written) instead of breaking the order.
SQL_LOCK_STREAM: Final = "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))"
# Several streams at once (`append_many`, `uow.lock_streams`), before the position is fixed, in
# the order given: the caller sorts the names, so that two transactions locking overlapping sets
# (or a unit of work appending in name order) take their locks in one order and never deadlock.
# The outer SELECT calls the lock function in the subquery's row order.
SQL_LOCK_STREAMS: Final = (
    "SELECT count(pg_advisory_xact_lock(hashtextextended(name, %s))) "
    "FROM (SELECT name FROM unnest(%s::text[]) WITH ORDINALITY AS given(name, n) ORDER BY n) AS names"
)
# Sent in the same message right after SQL_LOCK_STREAM, so it runs after the lock is granted, with
# a fresh READ COMMITTED snapshot: it sees the previous holder's committed events (the lock is
# released only after a commit is visible). The EXISTS tells an `ANY`/`STREAM_EXISTS` retry from
# a new append without another round trip; the tip's position is the order check's input.
SQL_STREAM_TIP: Final = (
    "SELECT tip.stream_version, tip.event_hash, EXISTS (SELECT 1 FROM events WHERE event_id = %s), "
    "tip.global_position FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT stream_version, event_hash, "
    "global_position FROM events WHERE stream_name = %s ORDER BY stream_version DESC LIMIT 1) AS tip ON true"
)
# The column list of every insert; one event per statement: SQL_INSERT_ONE (prepared).
SQL_INSERT_EVENTS: Final = (
    "INSERT INTO events (global_position, event_id, stream_name, stream_version, category, event_type, "
    "schema_version, data, metadata, recorded_at, occurred_at, event_hash) "
)
SQL_INSERT_ONE: Final = SQL_INSERT_EVENTS + "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
# A batch of any size in one constant statement, prepared once per connection: the events travel
# as one JSON array (`{"i": index in the batch, "id", "t": type, "s": schema version, "d": data,
# "m": metadata, "o": occurred_at or null, "h": hash}`; data and metadata as JSON strings, so
# their text arrives byte for byte, as the hash chain needs). Why not a multi-row VALUES: its text
# changes with the batch size, so the client re-parses it and the server re-plans it on every
# call, with 12 parameters per event to quote (about 4 ms per 100 events, measured). Same
# guarantees as one row at a time: the statement is atomic (no partial append), every row goes
# through the unique indexes (stream, version) and (event_id), and the positions are the
# transaction's own range: $1 is (transaction id << 20) + the index of the batch's first event.
# Parameters: first position, stream, first new version, category, recorded_at (twice: the column
# and occurred_at's default), the JSON array.
SQL_INSERT_MANY: Final = (
    SQL_INSERT_EVENTS + "SELECT %s + e.i, e.id, %s, %s + e.i, %s, e.t, e.s, e.d::json, e.m::json, "
    "%s, coalesce(e.o, %s), e.h FROM json_to_recordset(%s) "
    "AS e(i bigint, id uuid, t text, s integer, d text, m text, o timestamptz, h text)"
)
# Wakes waiting readers after an append committed. Deliberately NOT inside the append transaction:
# a transaction that has sent NOTIFY takes a database-wide lock at commit and holds it through its
# WAL flush (PostgreSQL orders the notification queue that way), so every notifying commit would
# wait for the previous one's fsync: all writers serialized on one lock after all (measured: 8
# writers went from ~570 to ~320 events/s). Instead it follows the COMMIT in the same message, in
# its own tiny transaction whose commit does not wait for the disk: it holds that lock for
# microseconds. A notification lost in a crash costs a waiting reader at most its periodic
# re-check, never an event. `{channel}` is a quoted literal.
SQL_NOTIFY_AFTER_COMMIT: Final = (
    "BEGIN; SET LOCAL synchronous_commit TO off; SELECT pg_notify({channel}, ''); COMMIT"
)
SQL_SAVE_CHECKPOINT: Final = (
    "INSERT INTO checkpoints (name, position, updated_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
)

# -- reading ----------------------------------------------------------------------------------

# In `RecordedEvent`'s field order, so that a page of rows becomes events in one `msgspec.convert`.
EVENT_COLUMNS: Final = (
    "event_id, stream_name, stream_version, global_position, event_type, "
    "data::text, metadata::text, schema_version, recorded_at, occurred_at"
)

# Guarantee: gap-free tailing. A transaction's events have positions in [id << 20, (id + 1) << 20).
# A reader only returns positions below (B << 20) for a barrier B that is safe: every transaction
# with an id below B that will ever commit events has committed before the reading statement's
# snapshot. Then nothing can appear below what a reader has seen, and a reader that continues
# after the last position it saw never skips an event. Two safe barriers, the read uses the larger:
#
# 1. The global one, pg_snapshot_xmin(pg_current_snapshot()) of the reading statement itself: every
#    transaction below it has finished, every transaction that can still commit has an id >= it.
#    Free, but one long transaction anywhere on the server (any database, any program) holds it.
#
# 2. The writers' barrier, SQL_WRITERS_BARRIER, computed in its own, earlier statement:
#      W = the lowest id among this schema's registered writers (see fix_position) still running at
#          W's snapshot, or that snapshot's xmax (every id handed out later is >= xmax) if none is.
#    Why it is safe: take a writer T with id X < W. X < xmax, so T had its id when W's snapshot was
#    taken, and it had registered before getting it. If T was still running when the statement
#    then looked at the lock table, X is among the ids W is the least of, so W <= X: a
#    contradiction. So T had ended by then: committed (before any later read's snapshot, so its
#    events are read) or rolled back (no events). W only rises, and stays safe for every later
#    read, so the store keeps the last value it computed and refreshes it only when a read finds
#    nothing new (at most every READ_BARRIER_REFRESH seconds): it costs a look at the lock table
#    (~0.5 ms of server time), too much for every read.
#    Transactions that are not writers of this schema do not hold W back; a registered writer that
#    runs long does: keep units of work short. pg_locks is readable by every role.
#    Parameters: the writer lock's key split as pg_locks shows it (classid, objid).
SQL_WRITERS_BARRIER: Final = (
    "WITH locks AS MATERIALIZED (SELECT * FROM pg_locks WHERE granted), "  # one look at the lock table
    "writers AS (SELECT pid FROM locks WHERE locktype = 'advisory' AND objsubid = 1 "
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    " AND classid::bigint = %s AND objid::bigint = %s), "
    # A transaction holds an exclusive lock on its own id from the moment it has one. The lock
    # table shows 32-bit ids; the snapshot's running list has the full 64-bit ones.
    "writer_ids AS (SELECT transactionid::text::bigint AS id32 FROM locks "
    " WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND pid IN (SELECT pid FROM writers)) "
    "SELECT least("
    " pg_snapshot_xmax(s.snap)::text::bigint, "
    " (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s.snap) AS x "
    "  WHERE mod(x::text::bigint, 4294967296) IN (SELECT id32 FROM writer_ids))"
    ") FROM (SELECT pg_current_snapshot() AS snap) AS s"
)
# Parameter: the last writers' barrier this store computed (0 before the first).
SQL_READ_BARRIER: Final = "(greatest(pg_snapshot_xmin(pg_current_snapshot())::text::bigint, %s) << 20)"
SQL_HEAD_POSITION: Final = (
    f"SELECT coalesce(max(global_position), 0) FROM events WHERE global_position < {SQL_READ_BARRIER}"
)
# The same without the barrier, for the test that shows what the barrier prevents.
SQL_HEAD_POSITION_UNSAFE: Final = "SELECT coalesce(max(global_position), 0) FROM events"

# A page of the global log: the events from $1 on (`{filters}`: category / type conditions),
# at most $2 of them (NULL: all), below the read barrier ($3: the writers' barrier) and at or
# below $4. Why the subquery: the limited, ordered scan of the primary key from $1 is the only
# index condition, so the planner always walks the index and stops after $2 rows. With the
# barrier and $4 as index conditions as well, PostgreSQL takes the range for 0.5% of the table
# while the table has no statistics yet (a new store, a bulk load; until autovacuum analyzes it),
# and picks a bitmap scan of everything after $1 plus a sort: 36 ms instead of 0.6 ms per page
# of 1,000 events, measured on 32,000 events, and quadratic over a catch-up read.
# The result is the same: the inner rows are in position order, so the rows below the barrier
# (and $4) among the first $2 from $1 are exactly the first up to $2 rows in [$1, barrier); at
# most $2 rows above the barrier are read and dropped. The barrier is still evaluated inside the
# reading statement, as the proof above requires.
SQL_READ_ALL: Final = (
    f"SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events WHERE global_position >= %s{{filters}} "
    f"ORDER BY global_position LIMIT %s) AS page "
    f"WHERE global_position < {SQL_READ_BARRIER} AND global_position <= %s ORDER BY global_position"
)
# The same for the test that shows what the barrier prevents: no barrier parameter.
SQL_READ_ALL_UNSAFE: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE global_position >= %s{{filters}} "
    f"AND global_position <= %s ORDER BY global_position LIMIT %s"
)

# For append hooks: the events an append just wrote, read inside its own (uncommitted) transaction.
# No read barrier: the positions are this transaction's own, and one append is one stream.
SQL_READ_OWN_APPEND: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE global_position BETWEEN %s AND %s ORDER BY global_position"
)
SQL_STREAM_VERSION: Final = "SELECT max(stream_version) FROM events WHERE stream_name = %s"
# Hydration's lean read (`read_stream_payloads`): the four columns a replay uses, straight off the
# (stream, version) index. Parameters: stream, first and last version (inclusive).
SQL_READ_PAYLOADS: Final = (
    "SELECT stream_version, event_type, schema_version, data::text FROM events "
    "WHERE stream_name = %s AND stream_version >= %s AND stream_version <= %s ORDER BY stream_version"
)
# Sent with SQL_READ_PAYLOADS in one message: an empty read is either "no events in that range"
# or "no such stream" (StreamNotFound), and a load from a snapshot at the stream's tip is always
# empty: this saves that load its third round trip.
SQL_STREAM_EXISTS: Final = "SELECT EXISTS (SELECT 1 FROM events WHERE stream_name = %s)"
SQL_FIND_EVENTS: Final = (
    "SELECT event_id, stream_name, stream_version, global_position FROM events WHERE event_id = ANY(%s)"
)
SQL_LIST_STREAMS: Final = (
    "SELECT stream_name, max(stream_version), count(*), min(recorded_at), max(recorded_at) "
    "FROM events WHERE stream_name >= %s AND stream_name < %s "
    "GROUP BY stream_name ORDER BY stream_name LIMIT %s"
)
SQL_READ_CORRELATED: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE metadata ->> 'correlation_id' = %s ORDER BY global_position"
)
SQL_LOAD_CHECKPOINT: Final = "SELECT position FROM checkpoints WHERE name = %s"
SQL_SAVE_SNAPSHOT: Final = (
    "INSERT INTO snapshots (stream_name, schema_version, stream_version, aggregate_type, state, recorded_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (stream_name, schema_version, stream_version) "
    "DO UPDATE SET aggregate_type = excluded.aggregate_type, state = excluded.state, "
    "recorded_at = excluded.recorded_at"
)
SQL_LOAD_SNAPSHOT: Final = (
    "SELECT stream_version, aggregate_type, state, recorded_at FROM snapshots "
    "WHERE stream_name = %s AND schema_version = %s AND stream_version <= %s "
    "ORDER BY stream_version DESC LIMIT 1"
)
SQL_DELETE_ALL_SNAPSHOTS: Final = "DELETE FROM snapshots"
SQL_DELETE_SNAPSHOTS: Final = "DELETE FROM snapshots WHERE stream_name = %s"

# -- prepared once per connection ---------------------------------------------------------------


# The pool prepares these on every new connection, so the server parses and plans them once; the
# one-message append (client-bound parameters, several statements) then only names them.
def _numbered(statement: str) -> str:
    """The statement with its `%s` placeholders as `$1, $2, ...`, as PREPARE wants them."""
    parts = statement.split("%s")
    return "".join(
        part + (f"${number}" if number < len(parts) else "") for number, part in enumerate(parts, 1)
    )


PREPARE_STATEMENTS: Final = (
    f"PREPARE chronik_fix(bigint, bigint, bigint) AS {_numbered(SQL_FIX_POSITION)}",
    f"PREPARE chronik_lock(text, bigint) AS {_numbered(SQL_LOCK_STREAM)}",
    f"PREPARE chronik_lock_many(bigint, text[]) AS {_numbered(SQL_LOCK_STREAMS)}",
    f"PREPARE chronik_tip(uuid, text) AS {_numbered(SQL_STREAM_TIP)}",
    "PREPARE chronik_insert_one(bigint, uuid, text, bigint, text, text, integer, json, json, "
    f"timestamptz, timestamptz, text) AS {_numbered(SQL_INSERT_ONE)}",
    "PREPARE chronik_insert_many(bigint, text, bigint, text, timestamptz, timestamptz, json) AS "
    f"{_numbered(SQL_INSERT_MANY)}",
    "PREPARE chronik_read_all(bigint, bigint, bigint, bigint) AS "
    f"{_numbered(SQL_READ_ALL.format(filters=''))}",
    f"PREPARE chronik_payloads(text, bigint, bigint) AS {_numbered(SQL_READ_PAYLOADS)}",
    f"PREPARE chronik_stream_exists(text) AS {_numbered(SQL_STREAM_EXISTS)}",
    f"PREPARE chronik_load_snapshot(text, integer, bigint) AS {_numbered(SQL_LOAD_SNAPSHOT)}",
)
EXECUTE_FIX: Final = "EXECUTE chronik_fix(%s, %s, %s)"
EXECUTE_LOCK: Final = "EXECUTE chronik_lock(%s, %s)"
EXECUTE_LOCK_MANY: Final = "EXECUTE chronik_lock_many(%s, %s)"
EXECUTE_TIP: Final = "EXECUTE chronik_tip(%s, %s)"
EXECUTE_INSERT_ONE: Final = "EXECUTE chronik_insert_one(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
# Parameters in SQL_INSERT_MANY's order (recorded_at twice: the column and occurred_at's default).
EXECUTE_INSERT_MANY: Final = "EXECUTE chronik_insert_many(%s, %s, %s, %s, %s, %s, %s)"
# Parameters: from, limit, writers' barrier, to (see SQL_READ_ALL).
EXECUTE_READ_ALL: Final = "EXECUTE chronik_read_all(%s, %s, %s, %s)"
EXECUTE_READ_PAYLOADS: Final = "EXECUTE chronik_payloads(%s, %s, %s); EXECUTE chronik_stream_exists(%s)"
EXECUTE_LOAD_SNAPSHOT: Final = "EXECUTE chronik_load_snapshot(%s, %s, %s)"


@functools.lru_cache(maxsize=1024)
def qmark_to_format(statement: str) -> str:
    """`?` placeholders to psycopg's `%s`, `%` to `%%`; quoted text and identifiers keep their `?`.

    The layers above the store (consumer groups, projections, API keys) write their SQL once with
    `?` for both databases; this is the one translation for PostgreSQL, cached per statement."""
    out: list[str] = []
    quote: str | None = None
    for char in statement:
        if char == "%":
            out.append("%%")
        elif quote is not None:
            out.append(char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)
