"""The PostgreSQL backend's schema and statements, each named, each with the guarantee it gives.

Kept apart from `postgres.py` so that the SQL can be read top to bottom as one piece: the
migrations, then the statements in the order an append uses them, then the readers.
"""

from __future__ import annotations

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
SQL_LOCK_STREAM: Final = "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))"
# Sent in the same message right after SQL_LOCK_STREAM, so it runs after the lock is granted, with
# a fresh READ COMMITTED snapshot: it sees the previous holder's committed events (the lock is
# released only after a commit is visible). The EXISTS tells an `ANY`/`STREAM_EXISTS` retry from
# a new append without another round trip.
SQL_STREAM_TIP: Final = (
    "SELECT tip.stream_version, tip.event_hash, EXISTS (SELECT 1 FROM events WHERE event_id = %s) "
    "FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT stream_version, event_hash FROM events "
    "WHERE stream_name = %s ORDER BY stream_version DESC LIMIT 1) AS tip ON true"
)
# Followed by INSERT_CHUNK or fewer `SQL_EVENT_ROW`s, joined by ", ".
SQL_INSERT_EVENTS: Final = (
    "INSERT INTO events (global_position, event_id, stream_name, stream_version, category, event_type, "
    "schema_version, data, metadata, recorded_at, occurred_at, event_hash) VALUES "
)
SQL_EVENT_ROW: Final = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
INSERT_CHUNK: Final = 100
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

EVENT_COLUMNS: Final = (
    "global_position, event_id, stream_name, stream_version, event_type, "
    "schema_version, data::text, metadata::text, recorded_at, occurred_at"
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

# For append hooks: the events an append just wrote, read inside its own (uncommitted) transaction.
# No read barrier: the positions are this transaction's own, and one append is one stream.
SQL_READ_OWN_APPEND: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE global_position BETWEEN %s AND %s ORDER BY global_position"
)
SQL_STREAM_VERSION: Final = "SELECT max(stream_version) FROM events WHERE stream_name = %s"
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
    f"PREPARE chronik_tip(uuid, text) AS {_numbered(SQL_STREAM_TIP)}",
    "PREPARE chronik_insert_one(bigint, uuid, text, bigint, text, text, integer, json, json, "
    f"timestamptz, timestamptz, text) AS {_numbered(SQL_INSERT_EVENTS + SQL_EVENT_ROW)}",
)
EXECUTE_FIX: Final = "EXECUTE chronik_fix(%s, %s, %s)"
EXECUTE_LOCK_AND_TIP: Final = "EXECUTE chronik_lock(%s, %s); EXECUTE chronik_tip(%s, %s)"
EXECUTE_INSERT_ONE: Final = "EXECUTE chronik_insert_one(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
