"""Real database faults for the examples' failure tests, one small helper per backend.

The tests that use them are the same on SQLite and PostgreSQL; only the way the fault is caused
differs, so it lives here:

* `DatabaseFaults.hold_write_lock()`: another real connection takes the database's write lock and
  keeps it, in an open transaction, until `release()`. SQLite: `BEGIN IMMEDIATE` (the one write
  lock of the file). PostgreSQL: `LOCK TABLE <every table of the store's schema> IN EXCLUSIVE MODE`,
  the same thing: plain reads go on, every write (insert, update, `SELECT ... FOR UPDATE`) waits.
  The store under test is opened with a short `busy_timeout` / `lock_timeout`, so its write fails
  with the backend's lock-timeout error instead of waiting.
* `DatabaseFaults.fail_updates_to(table, when_status)`: a real trigger on a table that aborts any
  update setting `status` to `when_status` (a statement that goes wrong inside the writer's
  transaction); `drop_trigger()` removes it.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

import psycopg
from psycopg import sql

from chronik.store import EventStore

SHORT_LOCK_WAIT = 0.2  # seconds the store under test waits for a lock before its write fails
TRIGGER = "chronik_test_fault"


def short_lock_wait_query(backend: str) -> str:
    """The `store_factory(query=...)` that makes a store give up waiting for a lock quickly."""
    if backend == "sqlite":
        return f"?busy_timeout={SHORT_LOCK_WAIT}"
    return f"&lock_timeout={SHORT_LOCK_WAIT}"


class DatabaseFaults(Protocol):
    def hold_write_lock(self) -> None: ...
    def release(self) -> None: ...
    def fail_updates_to(self, table: str, when_status: str) -> None: ...
    def drop_trigger(self, table: str) -> None: ...
    def close(self) -> None: ...


class SQLiteFaults:
    def __init__(self, store: EventStore) -> None:
        path: str = store.path  # type: ignore[attr-defined]
        self.connection = sqlite3.connect(path, isolation_level=None)

    def hold_write_lock(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.connection.execute("ROLLBACK")

    def fail_updates_to(self, table: str, when_status: str) -> None:
        self.connection.execute(
            f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON {table} "
            f"WHEN NEW.status = '{when_status}' "
            "BEGIN SELECT RAISE(ABORT, 'the board refuses this update (test trigger)'); END"
        )

    def drop_trigger(self, table: str) -> None:
        self.connection.execute(f"DROP TRIGGER {TRIGGER}")

    def close(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")
        self.connection.close()


class PostgresFaults:
    def __init__(self, store: EventStore) -> None:
        self.schema: str = store.schema  # type: ignore[attr-defined]
        conninfo: str = store.conninfo  # type: ignore[attr-defined]
        self.connection: psycopg.Connection[Any] = psycopg.connect(
            conninfo, autocommit=True, options=f"-c search_path={self.schema}"
        )

    def hold_write_lock(self) -> None:
        tables = [
            sql.Identifier(self.schema, name)
            for (name,) in self.connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (self.schema,)
            ).fetchall()
        ]
        self.connection.execute("BEGIN")
        self.connection.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.SQL(", ").join(tables)))

    def release(self) -> None:
        self.connection.execute("ROLLBACK")

    def fail_updates_to(self, table: str, when_status: str) -> None:
        self.connection.execute(
            sql.SQL(
                "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'the board refuses this update (test trigger)'; END $$"
            ).format(function=sql.Identifier(TRIGGER))
        )
        self.connection.execute(
            sql.SQL(
                "CREATE TRIGGER {trigger} BEFORE UPDATE ON {table} FOR EACH ROW "
                "WHEN (NEW.status = {status}) EXECUTE FUNCTION {function}()"
            ).format(
                trigger=sql.Identifier(TRIGGER),
                table=sql.Identifier(table),
                status=sql.Literal(when_status),
                function=sql.Identifier(TRIGGER),
            )
        )

    def drop_trigger(self, table: str) -> None:
        self.connection.execute(sql.SQL("DROP FUNCTION {} CASCADE").format(sql.Identifier(TRIGGER)))

    def close(self) -> None:
        if self.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.connection.execute("ROLLBACK")
        self.connection.close()


def faults_for(backend: str, store: EventStore) -> DatabaseFaults:
    if backend == "sqlite":
        return SQLiteFaults(store)
    if backend == "postgres":
        return PostgresFaults(store)
    raise ValueError(f"no database faults for backend {backend!r}")
