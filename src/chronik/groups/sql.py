"""Consumer groups on a SQL database: the protocol's statements and logic, written once.

SQLite (`groups/sqlite.py`) and PostgreSQL (`groups/postgres.py`) keep the same four tables and run
the statements below. Each guarantee is written beside the statement that gives it, with how each
database provides it: on SQLite, the one write lock every coordination transaction takes first
(`BEGIN IMMEDIATE`), so no two of them interleave at all; on PostgreSQL (READ COMMITTED), the row
locks the statements themselves take. A backend says only what truly differs: how it reaches its
database and opens a transaction, its placeholders, how it stores a time, its DDL, how it locks a
group's row and how it matches a list of partitions.

Statements use `?` placeholders; a backend whose driver wants another style rewrites them in
`_execute`/`_execute_many` (PostgreSQL: `%s`), so no statement here may contain a literal `?`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

import msgspec

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
from chronik.store import UnitOfWork

GROUP_SCHEMA_VERSION: Final = 1  # both backends' tables evolve together, apart from the store's

SQL_SCHEMA_VERSION: Final = "SELECT coalesce(max(version), 0) FROM group_schema_migrations"
SQL_RECORD_MIGRATION: Final = "INSERT INTO group_schema_migrations (version, applied_at) VALUES (?, ?)"

# A group is created once: a second creator's insert does nothing (on PostgreSQL ON CONFLICT waits
# for a concurrent creator of the same name to commit), then it reads the winner's config and is
# compared with it like any later member.
SQL_CREATE_GROUP: Final = (
    "INSERT INTO consumer_groups (group_name, partitions, categories, event_types, created_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name) DO NOTHING"
)
SQL_CREATE_PARTITION: Final = (
    "INSERT INTO group_partitions (group_name, partition, owner, epoch, lease_expires_at, checkpoint) "
    "VALUES (?, ?, NULL, 0, ?, ?)"
)
SQL_GROUP: Final = "SELECT partitions, categories, event_types FROM consumer_groups WHERE group_name = ?"
SQL_GROUP_NAMES: Final = "SELECT group_name FROM consumer_groups ORDER BY group_name"

# One rebalance (or leave) of a group at a time: each starts by reading the group's row, with the
# backend's `LOCK_ROW` (PostgreSQL: FOR UPDATE; SQLite: nothing, its write lock is already held).
# Fenced commits do not take it, so members never wait for each other's rebalances.
SQL_LOCK_GROUP: Final = "SELECT 1 FROM consumer_groups WHERE group_name = ?"

SQL_HEARTBEAT: Final = (
    "INSERT INTO group_members (group_name, member_id, joined_at, heartbeat_expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (group_name, member_id) DO UPDATE SET heartbeat_expires_at = excluded.heartbeat_expires_at"
)
SQL_EXPIRE_MEMBERS: Final = "DELETE FROM group_members WHERE group_name = ? AND heartbeat_expires_at <= ?"
SQL_LIVE_MEMBERS: Final = "SELECT member_id FROM group_members WHERE group_name = ?"
SQL_LEAVE_MEMBERS: Final = "DELETE FROM group_members WHERE group_name = ? AND member_id = ?"
SQL_MEMBERS: Final = (
    "SELECT member_id, joined_at, heartbeat_expires_at FROM group_members WHERE group_name = ? "
    "ORDER BY member_id"
)
SQL_PARTITIONS: Final = (
    "SELECT partition, owner, epoch, lease_expires_at, checkpoint FROM group_partitions "
    "WHERE group_name = ? ORDER BY partition"
)
SQL_HELD: Final = (
    "SELECT partition, epoch, checkpoint FROM group_partitions WHERE group_name = ? AND owner = ? "
    "ORDER BY partition"
)

# A grant raises the epoch; the WHERE repeats the plan's "free" test so a stale plan cannot steal.
# On PostgreSQL it is re-checked on the newest row version if a fenced commit held the row: a lease
# that commit just renewed is not free. (`lease_expires_at IS NULL`: never leased on PostgreSQL;
# SQLite stores '' for that, which sorts before every time.)
SQL_CLAIM: Final = (
    "UPDATE group_partitions SET owner = ?, epoch = epoch + 1, lease_expires_at = ? "
    "WHERE group_name = ? AND partition = ? "
    "AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?)"
)
SQL_RELEASE: Final = (
    "UPDATE group_partitions SET owner = NULL, lease_expires_at = ? "
    "WHERE group_name = ? AND partition = ? AND owner = ?"
)
SQL_LEAVE: Final = (
    "UPDATE group_partitions SET owner = NULL, lease_expires_at = ? WHERE group_name = ? AND owner = ?"
)
SQL_RENEW: Final = "UPDATE group_partitions SET lease_expires_at = ? WHERE group_name = ? AND owner = ?"

# Fencing: the checkpoint moves only for the current owner under the current epoch, and only from
# the checkpoint the batch started at. 0 rows updated means the lease was granted to someone else
# since (or another process under the same member id moved it): the caller's unit of work is rolled
# back. On SQLite the unit of work holds the write lock, so no claim runs until it ends. On
# PostgreSQL the UPDATE locks the row until the unit of work ends, so no claim can slip in before
# the commit; if a claim got the row first, this waits for it and re-checks the WHERE against the
# new owner and epoch.
SQL_FENCED_CHECKPOINT: Final = (
    "UPDATE group_partitions SET checkpoint = ?, lease_expires_at = coalesce(?, lease_expires_at) "
    "WHERE group_name = ? AND partition = ? AND owner = ? AND epoch = ? AND checkpoint = ?"
)
SQL_OWNER: Final = "SELECT owner, epoch FROM group_partitions WHERE group_name = ? AND partition = ?"

SQL_PARK: Final = (
    "INSERT INTO group_parked (group_name, partition, stream_name, global_position, event_id, blocked_by, "
    "error, attempts, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_PARKED_COLUMNS: Final = (
    "id, group_name, partition, stream_name, global_position, event_id, blocked_by, error, attempts, "
    "parked_at"
)
# Exactly-once replay: the row is deleted in the replay's own unit of work, and a second replayer
# deletes 0 rows (`ParkedEventGone`, rolled back). On PostgreSQL the second DELETE waits for the
# first's row lock, then finds no row.
SQL_UNPARK: Final = "DELETE FROM group_parked WHERE group_name = ? AND id = ?"
SQL_REPLAY_FAILED: Final = (
    "UPDATE group_parked SET error = ?, attempts = attempts + 1, blocked_by = NULL "
    "WHERE group_name = ? AND id = ?"
)


class Cursor(Protocol):
    """What the coordinator reads from an executed statement (sqlite3 and psycopg cursors have it)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


ConnectionT = TypeVar("ConnectionT")


class SQLCoordinator(GroupCoordinator, Generic[ConnectionT]):
    """`GroupCoordinator` over the four group tables; subclasses say how to reach their database.

    The logic never touches a connection itself: it hands it back to `_execute`, so a backend is
    free in its driver's types and placeholder style.
    """

    MIGRATIONS: ClassVar[Mapping[int, tuple[str, ...]]]  # the backend's DDL, by schema version
    SQL_CREATE_MIGRATIONS: ClassVar[str]  # the backend's `group_schema_migrations` table
    LOCK_ROW: ClassVar[str]  # appended to SQL_LOCK_GROUP: what makes reading the row lock it
    NEVER_LEASED: ClassVar[object]  # `lease_expires_at` of a partition nobody has held yet

    def __init__(self) -> None:
        self._migrate()

    # -- what a backend supplies ----------------------------------------------------------------

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[ConnectionT]:
        """A short transaction of the coordinator's own; it commits when the block ends."""

    @abc.abstractmethod
    def _reading(self) -> AbstractContextManager[ConnectionT]:
        """A connection for reads outside any unit of work."""

    @abc.abstractmethod
    def _connection(self, uow: UnitOfWork) -> ConnectionT:
        """The connection inside the caller's unit of work (raises `TypeError` for another store's)."""

    @abc.abstractmethod
    def _execute(self, connection: ConnectionT, sql: str, params: Sequence[object] = ()) -> Cursor: ...

    @abc.abstractmethod
    def _execute_many(self, connection: ConnectionT, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    @abc.abstractmethod
    def _time(self, moment: datetime) -> object:
        """A time as the backend's columns store it."""

    @abc.abstractmethod
    def _datetime(self, value: Any) -> datetime:
        """A stored time read back."""

    @abc.abstractmethod
    def _partition_in(self, partitions: Sequence[int]) -> tuple[str, list[object]]:
        """A condition `partition` is one of `partitions`, and its parameters."""

    def _lock_migrations(self, connection: ConnectionT) -> None:
        """Keep concurrent processes from migrating at once; SQLite's write lock already does."""

    # -- schema ----------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._transaction() as connection:
            self._lock_migrations(connection)
            self._execute(connection, self.SQL_CREATE_MIGRATIONS)
            row = self._execute(connection, SQL_SCHEMA_VERSION).fetchone()
            found = int(row[0]) if row else 0
            if found > GROUP_SCHEMA_VERSION:
                raise SchemaTooNew(found, GROUP_SCHEMA_VERSION)
            for version in range(found + 1, GROUP_SCHEMA_VERSION + 1):
                for statement in self.MIGRATIONS[version]:
                    self._execute(connection, statement)
                self._execute(connection, SQL_RECORD_MIGRATION, (version, self._time(self.store.clock())))

    # -- rows ------------------------------------------------------------------------------------

    def _partition_row(self, row: Sequence[Any]) -> PartitionRow:
        lease = None if row[3] is None or row[3] == self.NEVER_LEASED else self._datetime(row[3])
        return PartitionRow(
            partition=row[0], owner=row[1], epoch=row[2], lease_expires_at=lease, checkpoint=row[4]
        )

    def _parked(self, row: Sequence[Any]) -> ParkedEvent:
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
            parked_at=self._datetime(row[9]),
        )

    # -- groups ----------------------------------------------------------------------------------

    def ensure_group(self, config: GroupConfig) -> GroupConfig:
        with self._transaction() as connection:
            inserted = self._execute(
                connection,
                SQL_CREATE_GROUP,
                (
                    config.name,
                    config.partitions,
                    msgspec.json.encode(list(config.categories)).decode(),
                    msgspec.json.encode(list(config.event_types)).decode(),
                    self._time(self.store.clock()),
                ),
            ).rowcount
            if inserted:
                self._execute_many(
                    connection,
                    SQL_CREATE_PARTITION,
                    [
                        (config.name, number, self.NEVER_LEASED, config.start_position)
                        for number in range(config.partitions)
                    ],
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

    def _load(self, connection: ConnectionT, group: str) -> GroupConfig:
        row = self._execute(connection, SQL_GROUP, (group,)).fetchone()
        if row is None:
            raise GroupNotFound(group)
        return GroupConfig(
            name=group,
            partitions=row[0],
            categories=tuple(msgspec.json.decode(row[1])),
            event_types=tuple(msgspec.json.decode(row[2])),
        )

    def load_group(self, group: str) -> GroupConfig:
        with self._reading() as connection:
            return self._load(connection, group)

    def list_groups(self) -> list[GroupConfig]:
        with self._reading() as connection:
            names = self._execute(connection, SQL_GROUP_NAMES).fetchall()
            return [self._load(connection, row[0]) for row in names]

    # -- membership and leases -------------------------------------------------------------------

    def rebalance(self, group: str, member: str, ttl: float) -> list[Lease]:
        with self._transaction() as connection:
            moment = self.store.clock()
            now, expires = self._time(moment), self._time(moment + timedelta(seconds=ttl))
            if self._execute(connection, SQL_LOCK_GROUP + self.LOCK_ROW, (group,)).fetchone() is None:
                raise GroupNotFound(group)
            self._execute(connection, SQL_HEARTBEAT, (group, member, now, expires))
            self._execute(connection, SQL_EXPIRE_MEMBERS, (group, now))
            live = [row[0] for row in self._execute(connection, SQL_LIVE_MEMBERS, (group,)).fetchall()]
            rows = [
                self._partition_row(row)
                for row in self._execute(connection, SQL_PARTITIONS, (group,)).fetchall()
            ]
            plan = plan_rebalance(member, moment, live, rows)
            for number in plan.release:  # ascending: row locks are always taken in partition order
                self._execute(connection, SQL_RELEASE, (now, group, number, member))
            for number in plan.claim:
                self._execute(connection, SQL_CLAIM, (member, expires, group, number, now))
            self._execute(connection, SQL_RENEW, (expires, group, member))
            held = self._execute(connection, SQL_HELD, (group, member)).fetchall()
            return [Lease(row[0], row[1], row[2]) for row in held]

    def leave(self, group: str, member: str) -> None:
        with self._transaction() as connection:
            self._execute(connection, SQL_LOCK_GROUP + self.LOCK_ROW, (group,))
            self._execute(connection, SQL_LEAVE_MEMBERS, (group, member))
            self._execute(connection, SQL_LEAVE, (self._time(self.store.clock()), group, member))

    # -- fenced commit ---------------------------------------------------------------------------

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
        expires = None if ttl is None else self._time(moment + timedelta(seconds=ttl))
        for number in sorted(checkpoints):  # partition order, like every other row lock here
            epoch, previous, checkpoint = checkpoints[number]
            updated = self._execute(
                connection,
                SQL_FENCED_CHECKPOINT,
                (checkpoint, expires, group, number, member, epoch, previous),
            ).rowcount
            if updated != 1:
                current = self._execute(connection, SQL_OWNER, (group, number)).fetchone()
                raise PartitionLost(
                    group,
                    number,
                    member,
                    epoch,
                    current[0] if current else None,
                    current[1] if current else None,
                )
        if parked:
            now = self._time(moment)
            self._execute_many(
                connection,
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
                        now,
                    )
                    for item in parked
                ],
            )

    # -- parked events ---------------------------------------------------------------------------

    def blocked_streams(self, uow: UnitOfWork, group: str, partitions: Sequence[int]) -> dict[str, int]:
        connection = self._connection(uow)
        if not partitions:
            return {}
        condition, params = self._partition_in(partitions)
        rows = self._execute(
            connection,
            f"SELECT stream_name, min(id) FROM group_parked WHERE group_name = ? AND {condition} "
            "GROUP BY stream_name",
            (group, *params),
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def list_parked(
        self, group: str, *, stream: str | None = None, parked_id: int | None = None
    ) -> list[ParkedEvent]:
        clauses = ["group_name = ?"]
        params: list[object] = [group]
        if stream is not None:
            clauses.append("stream_name = ?")
            params.append(stream)
        if parked_id is not None:
            clauses.append("id = ?")
            params.append(parked_id)
        sql = f"SELECT {SQL_PARKED_COLUMNS} FROM group_parked WHERE {' AND '.join(clauses)} ORDER BY id"
        with self._reading() as connection:
            return [self._parked(row) for row in self._execute(connection, sql, params).fetchall()]

    def unpark(self, uow: UnitOfWork, group: str, parked_id: int) -> None:
        if self._execute(self._connection(uow), SQL_UNPARK, (group, parked_id)).rowcount != 1:
            raise ParkedEventGone(group, parked_id)

    def note_replay_failure(self, group: str, parked_id: int, error: str) -> None:
        with self._transaction() as connection:
            self._execute(connection, SQL_REPLAY_FAILED, (error, group, parked_id))

    def discard_parked(self, group: str, parked_id: int) -> bool:
        with self._transaction() as connection:
            return bool(self._execute(connection, SQL_UNPARK, (group, parked_id)).rowcount)

    # -- reading ---------------------------------------------------------------------------------

    def partition_rows(self, group: str) -> list[PartitionRow]:
        with self._reading() as connection:
            return [
                self._partition_row(row)
                for row in self._execute(connection, SQL_PARTITIONS, (group,)).fetchall()
            ]

    def member_rows(self, group: str) -> list[MemberRow]:
        with self._reading() as connection:
            rows = self._execute(connection, SQL_MEMBERS, (group,)).fetchall()
        return [
            MemberRow(
                member=row[0], joined_at=self._datetime(row[1]), heartbeat_expires_at=self._datetime(row[2])
            )
            for row in rows
        ]
