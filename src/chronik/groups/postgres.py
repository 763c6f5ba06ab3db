"""Consumer groups on PostgreSQL: what differs from SQLite beneath the shared SQL coordinator.

SQLite gets its safety from one write lock; here every guarantee comes from row locks, written
beside the statement that takes them in `groups/sql.py`. In short (READ COMMITTED throughout):

* **A claim and a fenced commit never interleave.** Both are UPDATEs of the partition's row, so
  the second waits for the first to commit and then re-checks its WHERE on the new row version.
  A commit that waited behind a claim finds the new epoch and updates nothing: `PartitionLost`,
  and the member's unit of work (its handler's writes included) rolls back. A claim that waited
  behind a commit finds the lease that commit renewed and takes nothing.
* **One rebalance per group at a time.** A rebalance first locks the group's row (`FOR UPDATE`),
  so heartbeats, expiry, quotas and claims of one group are decided by one member at a time (a
  rebalance is a few milliseconds every ttl/3). Fenced commits do not take that lock: members
  never wait for each other's rebalances, only for a partition row one of them is changing.
* **A paused lock holder fences itself.** A member stopped inside its unit of work keeps its
  partition rows locked, so nobody can take them over: its commit is accepted when it resumes
  (nothing interleaved). Stopped outside one, its leases run out and the fence refuses it.
* Coordination runs on pooled connections, outside the store's writers (`fix_position()`), so it
  never holds back the log's read barrier. Only `commit` and `unpark` run in the caller's unit of
  work, whose handler writes and checkpoint commit together.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, cast

import psycopg

from chronik.groups.sql import SQLCoordinator
from chronik.store import EventStore, UnitOfWork
from chronik.store.postgres import PostgresStore, PostgresUnitOfWork, _lock_key
from chronik.store.postgres_sql import qmark_to_format

GROUP_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE consumer_groups (
            group_name   text        PRIMARY KEY,  -- locked FOR UPDATE by each rebalance of the group
            partitions   integer     NOT NULL,
            categories   text        NOT NULL,     -- JSON array; empty: every category
            event_types  text        NOT NULL,     -- JSON array; empty: every type
            created_at   timestamptz NOT NULL
        )""",
        """CREATE TABLE group_members (
            group_name            text        NOT NULL,
            member_id             text        NOT NULL,
            joined_at             timestamptz NOT NULL,
            heartbeat_expires_at  timestamptz NOT NULL,  -- a row past this time is a dead member
            PRIMARY KEY (group_name, member_id)
        )""",
        """CREATE TABLE group_partitions (
            group_name        text        NOT NULL,
            partition         integer     NOT NULL,
            owner             text,                 -- NULL: free
            epoch             bigint      NOT NULL, -- +1 at every grant; a commit must name the current one
            lease_expires_at  timestamptz,          -- NULL: never leased
            checkpoint        bigint      NOT NULL, -- last global position handled (or scanned past)
            PRIMARY KEY (group_name, partition)
        )""",
        """CREATE TABLE group_parked (
            id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- parking order
            group_name       text        NOT NULL,
            partition        integer     NOT NULL,
            stream_name      text        NOT NULL,
            global_position  bigint      NOT NULL,
            event_id         text        NOT NULL,
            blocked_by       bigint,              -- NULL: failed itself; else waits behind that id
            error            text        NOT NULL,
            attempts         integer     NOT NULL,
            parked_at        timestamptz NOT NULL
        )""",
        "CREATE INDEX group_parked_stream ON group_parked (group_name, partition, stream_name, id)",
    ),
}

# Guarantee: concurrent processes migrate the group tables once (the second waits, then sees them).
SQL_MIGRATION_LOCK: Final = "SELECT pg_advisory_xact_lock(?)"


class PostgresCoordinator(SQLCoordinator[psycopg.Connection[Any]]):
    MIGRATIONS = GROUP_MIGRATIONS
    SQL_CREATE_MIGRATIONS = (
        "CREATE TABLE IF NOT EXISTS group_schema_migrations "
        "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
    )
    LOCK_ROW = " FOR UPDATE"  # held until the rebalance commits: one rebalance per group at a time
    NEVER_LEASED = None  # lease_expires_at is nullable here

    store: PostgresStore

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        super().__init__()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self.store.pooled_connection() as connection, connection.transaction():
            yield connection

    def _reading(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self.store.pooled_connection()

    def _connection(self, uow: UnitOfWork) -> psycopg.Connection[Any]:
        if not isinstance(uow, PostgresUnitOfWork):
            raise TypeError("a PostgreSQL coordinator needs a unit of work of the same PostgreSQL store")
        return uow.connection

    def _execute(
        self, connection: psycopg.Connection[Any], sql: str, params: Sequence[object] = ()
    ) -> psycopg.Cursor[Any]:
        return connection.execute(qmark_to_format(sql), params)

    def _execute_many(
        self, connection: psycopg.Connection[Any], sql: str, rows: Sequence[Sequence[object]]
    ) -> None:
        with connection.cursor() as cursor:
            cursor.executemany(qmark_to_format(sql), rows)

    def _time(self, moment: datetime) -> datetime:
        return moment  # timestamptz: psycopg converts both ways

    def _datetime(self, value: Any) -> datetime:
        return cast(datetime, value)  # timestamptz arrives as an aware datetime

    def _partition_in(self, partitions: Sequence[int]) -> tuple[str, list[object]]:
        return "partition = ANY(?)", [list(partitions)]  # one statement, whatever the count

    def _lock_migrations(self, connection: psycopg.Connection[Any]) -> None:
        self._execute(connection, SQL_MIGRATION_LOCK, (_lock_key("groups-migrate", self.store.schema),))


_coordinators: weakref.WeakKeyDictionary[PostgresStore, PostgresCoordinator] = weakref.WeakKeyDictionary()
_coordinators_lock = threading.Lock()


def coordinator_for(store: EventStore) -> PostgresCoordinator:
    """The store's coordinator (its tables are migrated once per store object)."""
    if not isinstance(store, PostgresStore):
        raise TypeError(f"a PostgreSQL coordinator needs a PostgresStore, not {type(store).__name__}")
    with _coordinators_lock:
        coordinator = _coordinators.get(store)
        if coordinator is None:
            coordinator = _coordinators[store] = PostgresCoordinator(store)
        return coordinator
