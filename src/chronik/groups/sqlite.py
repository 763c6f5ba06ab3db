"""Consumer groups on SQLite: members, partitions and parked events as tables beside the events.

Every method that changes rows runs in a unit of work (`BEGIN IMMEDIATE`), which holds SQLite's
single write lock. That lock is what makes the protocol safe across processes: a claim (which
raises the epoch) and a member's fenced commit can never interleave, so the `WHERE owner = ? AND
epoch = ?` of the commit sees either the old grant or the new one, never half of each. The tables
carry their own schema version (`group_schema_migrations`), so groups evolve apart from the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from chronik.errors import SchemaTooNew
from chronik.events.envelope import format_timestamp, parse_timestamp
from chronik.groups.coordinator import GroupCoordinator, MemberRow, PartitionRow, plan_rebalance
from chronik.groups.types import (
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
from chronik.store.sqlite import SQLiteStore, SQLiteUnitOfWork

GROUP_SCHEMA_VERSION: Final = 1

GROUP_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS consumer_groups (
            group_name   TEXT PRIMARY KEY,
            partitions   INTEGER NOT NULL,
            categories   TEXT NOT NULL,   -- JSON array; empty: every category
            event_types  TEXT NOT NULL,   -- JSON array; empty: every type
            created_at   TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS group_members (
            group_name            TEXT NOT NULL,
            member_id             TEXT NOT NULL,
            joined_at             TEXT NOT NULL,
            heartbeat_expires_at  TEXT NOT NULL,  -- a row past this time is a dead member
            PRIMARY KEY (group_name, member_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS group_partitions (
            group_name        TEXT    NOT NULL,
            partition         INTEGER NOT NULL,
            owner             TEXT,               -- NULL: free
            epoch             INTEGER NOT NULL,   -- +1 at every grant; a commit must name the current one
            lease_expires_at  TEXT    NOT NULL,   -- '' (sorts first): never leased
            checkpoint        INTEGER NOT NULL,   -- last global position handled (or scanned past)
            PRIMARY KEY (group_name, partition)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS group_parked (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- parking order, never reused
            group_name       TEXT    NOT NULL,
            partition        INTEGER NOT NULL,
            stream_name      TEXT    NOT NULL,
            global_position  INTEGER NOT NULL,
            event_id         TEXT    NOT NULL,
            blocked_by       INTEGER,          -- NULL: failed itself; else waits behind that id
            error            TEXT    NOT NULL,
            attempts         INTEGER NOT NULL,
            parked_at        TEXT    NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS group_parked_stream "
        "ON group_parked (group_name, partition, stream_name, id)",
    ),
}

# Fencing: the checkpoint moves only for the current owner under the current epoch. 0 rows updated
# means the lease was granted to someone else since: the caller's unit of work is rolled back.
SQL_FENCED_CHECKPOINT: Final = (
    "UPDATE group_partitions SET checkpoint = ?, lease_expires_at = coalesce(?, lease_expires_at) "
    "WHERE group_name = ? AND partition = ? AND owner = ? AND epoch = ?"
)
# A grant raises the epoch; the WHERE repeats the plan's "free" test so a stale plan cannot steal.
SQL_CLAIM: Final = (
    "UPDATE group_partitions SET owner = ?, epoch = epoch + 1, lease_expires_at = ? "
    "WHERE group_name = ? AND partition = ? AND (owner IS NULL OR lease_expires_at <= ?)"
)
SQL_RELEASE: Final = (
    "UPDATE group_partitions SET owner = NULL, lease_expires_at = ? "
    "WHERE group_name = ? AND partition = ? AND owner = ?"
)
SQL_LEAVE: Final = (
    "UPDATE group_partitions SET owner = NULL, lease_expires_at = ? WHERE group_name = ? AND owner = ?"
)
SQL_RENEW: Final = "UPDATE group_partitions SET lease_expires_at = ? WHERE group_name = ? AND owner = ?"
SQL_HEARTBEAT: Final = (
    "INSERT INTO group_members (group_name, member_id, joined_at, heartbeat_expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (group_name, member_id) DO UPDATE SET heartbeat_expires_at = excluded.heartbeat_expires_at"
)
SQL_EXPIRE_MEMBERS: Final = "DELETE FROM group_members WHERE group_name = ? AND heartbeat_expires_at <= ?"
SQL_PARTITIONS: Final = (
    "SELECT partition, owner, epoch, lease_expires_at, checkpoint FROM group_partitions "
    "WHERE group_name = ? ORDER BY partition"
)
SQL_PARK: Final = (
    "INSERT INTO group_parked (group_name, partition, stream_name, global_position, event_id, blocked_by, "
    "error, attempts, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PARKED_COLUMNS: Final = (
    "id, group_name, partition, stream_name, global_position, event_id, blocked_by, error, attempts, "
    "parked_at"
)


def _time(text: str) -> datetime | None:
    return parse_timestamp(text) if text else None


def _partition_row(row: tuple[Any, ...]) -> PartitionRow:
    return PartitionRow(
        partition=row[0], owner=row[1], epoch=row[2], lease_expires_at=_time(row[3]), checkpoint=row[4]
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
        parked_at=parse_timestamp(row[9]),
    )


class SQLiteCoordinator(GroupCoordinator):
    store: SQLiteStore

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self._migrate()

    def _migrate(self) -> None:
        with self.store.transaction() as uow:
            connection = uow.connection
            connection.execute(
                "CREATE TABLE IF NOT EXISTS group_schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            found = connection.execute(
                "SELECT coalesce(max(version), 0) FROM group_schema_migrations"
            ).fetchone()[0]
            if found > GROUP_SCHEMA_VERSION:
                raise SchemaTooNew(found, GROUP_SCHEMA_VERSION)
            for version in range(found + 1, GROUP_SCHEMA_VERSION + 1):
                for statement in GROUP_MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO group_schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, format_timestamp(self.store.clock())),
                )

    @staticmethod
    def _connection(uow: UnitOfWork) -> sqlite3.Connection:
        if not isinstance(uow, SQLiteUnitOfWork):
            raise TypeError("a SQLite coordinator needs a unit of work of the same SQLite store")
        return uow.connection

    # -- groups ------------------------------------------------------------------------------

    def ensure_group(self, config: GroupConfig) -> GroupConfig:
        with self.store.transaction() as uow:
            connection = uow.connection
            now = format_timestamp(self.store.clock())
            inserted = connection.execute(
                "INSERT INTO consumer_groups (group_name, partitions, categories, event_types, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name) DO NOTHING",
                (
                    config.name,
                    config.partitions,
                    msgspec.json.encode(list(config.categories)).decode(),
                    msgspec.json.encode(list(config.event_types)).decode(),
                    now,
                ),
            ).rowcount
            if inserted:
                connection.executemany(
                    "INSERT INTO group_partitions (group_name, partition, owner, epoch, lease_expires_at, "
                    "checkpoint) VALUES (?, ?, NULL, 0, '', ?)",
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
    def _load(connection: sqlite3.Connection, group: str) -> GroupConfig:
        row = connection.execute(
            "SELECT partitions, categories, event_types FROM consumer_groups WHERE group_name = ?", (group,)
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
        return self._load(self.store.connection(), group)

    def list_groups(self) -> list[GroupConfig]:
        names = self.store.connection().execute("SELECT group_name FROM consumer_groups ORDER BY group_name")
        return [self.load_group(row[0]) for row in names.fetchall()]

    # -- membership and leases ----------------------------------------------------------------

    def rebalance(self, group: str, member: str, ttl: float) -> list[Lease]:
        with self.store.transaction() as uow:
            connection = uow.connection
            moment = self.store.clock()
            now = format_timestamp(moment)
            expires = format_timestamp(moment + timedelta(seconds=ttl))
            if (
                connection.execute("SELECT 1 FROM consumer_groups WHERE group_name = ?", (group,)).fetchone()
                is None
            ):
                raise GroupNotFound(group)
            connection.execute(SQL_HEARTBEAT, (group, member, now, expires))
            connection.execute(SQL_EXPIRE_MEMBERS, (group, now))
            live = [
                row[0]
                for row in connection.execute(
                    "SELECT member_id FROM group_members WHERE group_name = ?", (group,)
                )
            ]
            rows = [_partition_row(row) for row in connection.execute(SQL_PARTITIONS, (group,))]
            plan = plan_rebalance(member, moment, live, rows)
            for number in plan.release:
                connection.execute(SQL_RELEASE, (now, group, number, member))
            for number in plan.claim:
                connection.execute(SQL_CLAIM, (member, expires, group, number, now))
            connection.execute(SQL_RENEW, (expires, group, member))
            return [
                Lease(row[0], row[1], row[2])
                for row in connection.execute(
                    "SELECT partition, epoch, checkpoint FROM group_partitions "
                    "WHERE group_name = ? AND owner = ? ORDER BY partition",
                    (group, member),
                )
            ]

    def leave(self, group: str, member: str) -> None:
        with self.store.transaction() as uow:
            now = format_timestamp(self.store.clock())
            uow.connection.execute(
                "DELETE FROM group_members WHERE group_name = ? AND member_id = ?", (group, member)
            )
            uow.connection.execute(SQL_LEAVE, (now, group, member))

    # -- fenced commit --------------------------------------------------------------------------

    def commit(
        self,
        uow: UnitOfWork,
        group: str,
        member: str,
        checkpoints: Mapping[int, tuple[int, int]],
        parked: Sequence[NewParked] = (),
        ttl: float | None = None,
    ) -> None:
        connection = self._connection(uow)
        moment = self.store.clock()
        expires = None if ttl is None else format_timestamp(moment + timedelta(seconds=ttl))
        for number, (epoch, checkpoint) in checkpoints.items():
            updated = connection.execute(
                SQL_FENCED_CHECKPOINT, (checkpoint, expires, group, number, member, epoch)
            ).rowcount
            if updated != 1:
                current = connection.execute(
                    "SELECT owner, epoch FROM group_partitions WHERE group_name = ? AND partition = ?",
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
            now = format_timestamp(moment)
            connection.executemany(
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
        marks = ", ".join("?" * len(partitions))
        rows = connection.execute(
            f"SELECT stream_name, min(id) FROM group_parked WHERE group_name = ? AND partition IN ({marks}) "
            "GROUP BY stream_name",
            (group, *partitions),
        )
        return {row[0]: row[1] for row in rows}

    def list_parked(
        self, group: str, *, stream: str | None = None, parked_id: int | None = None
    ) -> list[ParkedEvent]:
        clauses = ["group_name = ?"]
        params: list[Any] = [group]
        if stream is not None:
            clauses.append("stream_name = ?")
            params.append(stream)
        if parked_id is not None:
            clauses.append("id = ?")
            params.append(parked_id)
        rows = self.store.connection().execute(
            f"SELECT {_PARKED_COLUMNS} FROM group_parked WHERE {' AND '.join(clauses)} ORDER BY id", params
        )
        return [_parked(row) for row in rows]

    def unpark(self, uow: UnitOfWork, group: str, parked_id: int) -> None:
        # Exactly-once replay: the row goes in the replay's own transaction; a second replayer deletes 0 rows.
        deleted = (
            self._connection(uow)
            .execute("DELETE FROM group_parked WHERE group_name = ? AND id = ?", (group, parked_id))
            .rowcount
        )
        if deleted != 1:
            raise ParkedEventGone(group, parked_id)

    def note_replay_failure(self, group: str, parked_id: int, error: str) -> None:
        with self.store.transaction() as uow:
            uow.connection.execute(
                "UPDATE group_parked SET error = ?, attempts = attempts + 1, blocked_by = NULL "
                "WHERE group_name = ? AND id = ?",
                (error, group, parked_id),
            )

    def discard_parked(self, group: str, parked_id: int) -> bool:
        with self.store.transaction() as uow:
            return bool(
                uow.connection.execute(
                    "DELETE FROM group_parked WHERE group_name = ? AND id = ?", (group, parked_id)
                ).rowcount
            )

    # -- reading ---------------------------------------------------------------------------------

    def partition_rows(self, group: str) -> list[PartitionRow]:
        return [_partition_row(row) for row in self.store.connection().execute(SQL_PARTITIONS, (group,))]

    def member_rows(self, group: str) -> list[MemberRow]:
        rows = self.store.connection().execute(
            "SELECT member_id, joined_at, heartbeat_expires_at FROM group_members WHERE group_name = ? "
            "ORDER BY member_id",
            (group,),
        )
        return [
            MemberRow(
                member=row[0], joined_at=parse_timestamp(row[1]), heartbeat_expires_at=parse_timestamp(row[2])
            )
            for row in rows
        ]
