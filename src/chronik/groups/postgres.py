"""Consumer groups on PostgreSQL: members, partitions and parked events as tables beside the events.

SQLite gets its safety from one write lock; here every guarantee comes from row locks, written
beside the statement that takes them. In short (READ COMMITTED throughout):

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

import threading
import weakref
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

import msgspec
import psycopg

from chronik.errors import SchemaTooNew
from chronik.groups.coordinator import GroupCoordinator, MemberRow, PartitionRow, plan_rebalance
from chronik.groups.types import (
    Advance,
    GroupConfig,
    GroupConfigMismatch,
    GroupNotFound,
    Lease,
    NewParked,
    ParkedEvent,
    ParkedEventGone,
    PartitionLost,
)
from chronik.store import EventStore, UnitOfWork
from chronik.store.postgres import PostgresStore, PostgresUnitOfWork, _lock_key

GROUP_SCHEMA_VERSION: Final = 1

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
SQL_MIGRATION_LOCK: Final = "SELECT pg_advisory_xact_lock(%s)"

# Fencing: the checkpoint moves only for the current owner under the current epoch, and only from
# the checkpoint the batch started at. The UPDATE locks the row until the caller's unit of work
# ends, so no claim can slip in before the commit; if a claim got the row first, this waits for it
# and re-checks the WHERE against the new owner and epoch: 0 rows, and the unit of work rolls back.
SQL_FENCED_CHECKPOINT: Final = (
    "UPDATE group_partitions SET checkpoint = %s, lease_expires_at = coalesce(%s, lease_expires_at) "
    "WHERE group_name = %s AND partition = %s AND owner = %s AND epoch = %s AND checkpoint = %s"
)
# One rebalance of a group at a time: every rebalance starts by locking the group's row.
SQL_LOCK_GROUP: Final = "SELECT 1 FROM consumer_groups WHERE group_name = %s FOR UPDATE"
# A grant raises the epoch; the WHERE repeats the plan's "free" test, and is re-checked on the
# newest row version if a fenced commit held the row: a lease it just renewed is not free.
SQL_CLAIM: Final = (
    "UPDATE group_partitions SET owner = %s, epoch = epoch + 1, lease_expires_at = %s "
    "WHERE group_name = %s AND partition = %s "
    "AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= %s)"
)
SQL_RELEASE: Final = (
    "UPDATE group_partitions SET owner = NULL, lease_expires_at = %s "
    "WHERE group_name = %s AND partition = %s AND owner = %s"
)
SQL_LEAVE: Final = (
    "UPDATE group_partitions SET owner = NULL, lease_expires_at = %s WHERE group_name = %s AND owner = %s"
)
SQL_RENEW: Final = "UPDATE group_partitions SET lease_expires_at = %s WHERE group_name = %s AND owner = %s"
SQL_HEARTBEAT: Final = (
    "INSERT INTO group_members (group_name, member_id, joined_at, heartbeat_expires_at) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (group_name, member_id) "
    "DO UPDATE SET heartbeat_expires_at = excluded.heartbeat_expires_at"
)
SQL_EXPIRE_MEMBERS: Final = "DELETE FROM group_members WHERE group_name = %s AND heartbeat_expires_at <= %s"
SQL_LIVE_MEMBERS: Final = "SELECT member_id FROM group_members WHERE group_name = %s"
SQL_PARTITIONS: Final = (
    "SELECT partition, owner, epoch, lease_expires_at, checkpoint FROM group_partitions "
    "WHERE group_name = %s ORDER BY partition"
)
SQL_HELD: Final = (
    "SELECT partition, epoch, checkpoint FROM group_partitions "
    "WHERE group_name = %s AND owner = %s ORDER BY partition"
)
SQL_PARK: Final = (
    "INSERT INTO group_parked (group_name, partition, stream_name, global_position, event_id, blocked_by, "
    "error, attempts, parked_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# Exactly-once replay: the row is deleted in the replay's own unit of work. A second replayer's
# DELETE waits for the first's row lock, then finds no row (0 rows: `ParkedEventGone`, rolled back).
SQL_UNPARK: Final = "DELETE FROM group_parked WHERE group_name = %s AND id = %s"
_PARKED_COLUMNS: Final = (
    "id, group_name, partition, stream_name, global_position, event_id, blocked_by, error, attempts, "
    "parked_at"
)


def _partition_row(row: tuple[Any, ...]) -> PartitionRow:
    return PartitionRow(
        partition=row[0], owner=row[1], epoch=row[2], lease_expires_at=row[3], checkpoint=row[4]
    )


def _parked(row: tuple[Any, ...]) -> ParkedEvent:
    return ParkedEvent(
        id=row[0],
        group=row[1],
        partition=row[2],
        stream=row[3],
        global_position=row[4],
        event_id=row[5],
        blocked_by=row[6],
        error=row[7],
        attempts=row[8],
        parked_at=row[9],
    )


class PostgresCoordinator(GroupCoordinator):
    store: PostgresStore

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self._migrate()

    def _migrate(self) -> None:
        with self.store.pooled_connection() as connection, connection.transaction():
            connection.execute(SQL_MIGRATION_LOCK, (_lock_key("groups-migrate", self.store.schema),))
            connection.execute(
                "CREATE TABLE IF NOT EXISTS group_schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
            )
            row = connection.execute(
                "SELECT coalesce(max(version), 0) FROM group_schema_migrations"
            ).fetchone()
            found = int(row[0]) if row else 0
            if found > GROUP_SCHEMA_VERSION:
                raise SchemaTooNew(found, GROUP_SCHEMA_VERSION)
            for version in range(found + 1, GROUP_SCHEMA_VERSION + 1):
                for statement in GROUP_MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO group_schema_migrations (version, applied_at) VALUES (%s, %s)",
                    (version, self.store.clock()),
                )

    @staticmethod
    def _connection(uow: UnitOfWork) -> psycopg.Connection[Any]:
        if not isinstance(uow, PostgresUnitOfWork):
            raise TypeError("a PostgreSQL coordinator needs a unit of work of the same PostgreSQL store")
        return uow.connection

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.store.pooled_connection() as connection:
            return connection.execute(statement, params).fetchall()

    # -- groups ------------------------------------------------------------------------------

    def ensure_group(self, config: GroupConfig) -> GroupConfig:
        with self.store.pooled_connection() as connection, connection.transaction():
            # ON CONFLICT waits for a concurrent creator of the same name to commit: the loser
            # then reads the winner's config and is compared with it like any later member.
            inserted = connection.execute(
                "INSERT INTO consumer_groups (group_name, partitions, categories, event_types, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (group_name) DO NOTHING",
                (
                    config.name,
                    config.partitions,
                    msgspec.json.encode(list(config.categories)).decode(),
                    msgspec.json.encode(list(config.event_types)).decode(),
                    self.store.clock(),
                ),
            ).rowcount
            if inserted:
                with connection.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO group_partitions (group_name, partition, owner, epoch, "
                        "lease_expires_at, checkpoint) VALUES (%s, %s, NULL, 0, NULL, %s)",
                        [(config.name, number, config.start_position) for number in range(config.partitions)],
                    )
                return config
            stored = self._load(connection, config.name)
        if (stored.partitions, stored.categories, stored.event_types) != (
            config.partitions,
            config.categories,
            config.event_types,
        ):
            raise GroupConfigMismatch(stored, config)
        return stored

    @staticmethod
    def _load(connection: psycopg.Connection[Any], group: str) -> GroupConfig:
        row = connection.execute(
            "SELECT partitions, categories, event_types FROM consumer_groups WHERE group_name = %s", (group,)
        ).fetchone()
        if row is None:
            raise GroupNotFound(group)
        return GroupConfig(
            name=group,
            partitions=row[0],
            categories=tuple(msgspec.json.decode(row[1])),
            event_types=tuple(msgspec.json.decode(row[2])),
        )

    def load_group(self, group: str) -> GroupConfig:
        with self.store.pooled_connection() as connection:
            return self._load(connection, group)

    def list_groups(self) -> list[GroupConfig]:
        with self.store.pooled_connection() as connection:
            names = connection.execute(
                "SELECT group_name FROM consumer_groups ORDER BY group_name"
            ).fetchall()
            return [self._load(connection, row[0]) for row in names]

    # -- membership and leases ----------------------------------------------------------------

    def rebalance(self, group: str, member: str, ttl: float) -> list[Lease]:
        moment = self.store.clock()
        expires = moment + timedelta(seconds=ttl)
        with self.store.pooled_connection() as connection, connection.transaction():
            if connection.execute(SQL_LOCK_GROUP, (group,)).fetchone() is None:
                raise GroupNotFound(group)
            connection.execute(SQL_HEARTBEAT, (group, member, moment, expires))
            connection.execute(SQL_EXPIRE_MEMBERS, (group, moment))
            live = [row[0] for row in connection.execute(SQL_LIVE_MEMBERS, (group,)).fetchall()]
            rows = [_partition_row(row) for row in connection.execute(SQL_PARTITIONS, (group,)).fetchall()]
            plan = plan_rebalance(member, moment, live, rows)
            for number in plan.release:  # ascending: row locks are always taken in partition order
                connection.execute(SQL_RELEASE, (moment, group, number, member))
            for number in plan.claim:
                connection.execute(SQL_CLAIM, (member, expires, group, number, moment))
            connection.execute(SQL_RENEW, (expires, group, member))
            return [Lease(row[0], row[1], row[2]) for row in connection.execute(SQL_HELD, (group, member))]

    def leave(self, group: str, member: str) -> None:
        with self.store.pooled_connection() as connection, connection.transaction():
            connection.execute(SQL_LOCK_GROUP, (group,))
            connection.execute(
                "DELETE FROM group_members WHERE group_name = %s AND member_id = %s", (group, member)
            )
            connection.execute(SQL_LEAVE, (self.store.clock(), group, member))

    # -- fenced commit --------------------------------------------------------------------------

    def commit(
        self,
        uow: UnitOfWork,
        group: str,
        member: str,
        checkpoints: Mapping[int, Advance],
        parked: Sequence[NewParked] = (),
        ttl: float | None = None,
    ) -> None:
        connection = self._connection(uow)
        moment = self.store.clock()
        expires = None if ttl is None else moment + timedelta(seconds=ttl)
        for number in sorted(checkpoints):  # partition order, like every other row lock here
            epoch, previous, checkpoint = checkpoints[number]
            updated = connection.execute(
                SQL_FENCED_CHECKPOINT, (checkpoint, expires, group, number, member, epoch, previous)
            ).rowcount
            if updated != 1:
                current = connection.execute(
                    "SELECT owner, epoch FROM group_partitions WHERE group_name = %s AND partition = %s",
                    (group, number),
                ).fetchone()
                raise PartitionLost(
                    group,
                    number,
                    member,
                    epoch,
                    current[0] if current else None,
                    current[1] if current else None,
                )
        if parked:
            with connection.cursor() as cursor:
                cursor.executemany(
                    SQL_PARK,
                    [
                        (
                            group,
                            item.partition,
                            item.stream,
                            item.global_position,
                            item.event_id,
                            item.blocked_by,
                            item.error,
                            item.attempts,
                            moment,
                        )
                        for item in parked
                    ],
                )

    # -- parked events ---------------------------------------------------------------------------

    def blocked_streams(self, uow: UnitOfWork, group: str, partitions: Sequence[int]) -> dict[str, int]:
        if not partitions:
            return {}
        rows = (
            self._connection(uow)
            .execute(
                "SELECT stream_name, min(id) FROM group_parked WHERE group_name = %s AND partition = ANY(%s) "
                "GROUP BY stream_name",
                (group, list(partitions)),
            )
            .fetchall()
        )
        return {row[0]: row[1] for row in rows}

    def list_parked(
        self, group: str, *, stream: str | None = None, parked_id: int | None = None
    ) -> list[ParkedEvent]:
        clauses = ["group_name = %s"]
        params: list[Any] = [group]
        if stream is not None:
            clauses.append("stream_name = %s")
            params.append(stream)
        if parked_id is not None:
            clauses.append("id = %s")
            params.append(parked_id)
        rows = self._rows(
            f"SELECT {_PARKED_COLUMNS} FROM group_parked WHERE {' AND '.join(clauses)} ORDER BY id", params
        )
        return [_parked(row) for row in rows]

    def unpark(self, uow: UnitOfWork, group: str, parked_id: int) -> None:
        if self._connection(uow).execute(SQL_UNPARK, (group, parked_id)).rowcount != 1:
            raise ParkedEventGone(group, parked_id)

    def note_replay_failure(self, group: str, parked_id: int, error: str) -> None:
        with self.store.pooled_connection() as connection:
            connection.execute(
                "UPDATE group_parked SET error = %s, attempts = attempts + 1, blocked_by = NULL "
                "WHERE group_name = %s AND id = %s",
                (error, group, parked_id),
            )

    def discard_parked(self, group: str, parked_id: int) -> bool:
        with self.store.pooled_connection() as connection:
            return bool(connection.execute(SQL_UNPARK, (group, parked_id)).rowcount)

    # -- reading ---------------------------------------------------------------------------------

    def partition_rows(self, group: str) -> list[PartitionRow]:
        return [_partition_row(row) for row in self._rows(SQL_PARTITIONS, (group,))]

    def member_rows(self, group: str) -> list[MemberRow]:
        rows = self._rows(
            "SELECT member_id, joined_at, heartbeat_expires_at FROM group_members WHERE group_name = %s "
            "ORDER BY member_id",
            (group,),
        )
        return [MemberRow(member=row[0], joined_at=row[1], heartbeat_expires_at=row[2]) for row in rows]


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
