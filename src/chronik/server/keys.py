"""API keys: random secrets, stored only as SHA-256 hashes, in the store's own database.

A key reads `chronik_<key id>_<secret>`. The id (12 hex digits) finds the row; the secret
(32 random bytes, URL-safe base64) is never stored: the row keeps its SHA-256, and a presented
secret is hashed and compared with `hmac.compare_digest` (constant time). A 256-bit random secret
needs no slow password hash: there is nothing to guess from the digest.

Scopes: `read` (streams, the log, state, projections, groups, metrics), `append` (write events
and run application commands), `admin` (rebuild projections, replay or discard parked events;
implies the other two). A key may be limited to stream-name prefixes (`cart-`): it then sees and
writes only those streams, and cannot use the log-wide read models (projections, groups).

The table `api_keys` lives next to the events (created idempotently), so `chronik keys create`
against the same store URL takes effect in a running server at once.

Once a key has been created, keys stay required (`requires_keys`), even after every key is revoked:
revoking the last key must never open a server to anonymous requests. Opening it again is an
explicit act, `chronik keys open-access` (`open_access`), refused while an active key exists; it
records the moment in `api_access`, and any key created after it closes access again.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, Final

import msgspec

from chronik.errors import ChronikError, InvalidInput
from chronik.events.envelope import format_timestamp, parse_timestamp
from chronik.store import EventStore
from chronik.store.postgres_sql import qmark_to_format

SCOPES: Final = ("read", "append", "admin")
TOKEN_PREFIX: Final = "chronik"


class KeyRingError(ChronikError):
    """A key operation that cannot be done (an unknown key, a store without a key table)."""


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    name: str
    scopes: tuple[str, ...]
    stream_prefixes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def allows_stream(self, stream: str) -> bool:
        return not self.stream_prefixes or any(stream.startswith(prefix) for prefix in self.stream_prefixes)


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(scope.strip().lower() for scope in scopes if scope.strip()))
    if not cleaned:
        raise InvalidInput(f"a key needs at least one scope ({', '.join(SCOPES)})")
    unknown = [scope for scope in cleaned if scope not in SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scope(s) {', '.join(unknown)}: use {', '.join(SCOPES)}")
    return cleaned


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) from `chronik_<id>_<secret>`, or None for anything else."""
    prefix, _, rest = token.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or len(key_id) != 12 or not secret:
        return None
    if any(char not in "0123456789abcdef" for char in key_id):
        return None
    return key_id, secret


_DUMMY_HASH: Final = hash_secret("not a key")


class KeyRing(abc.ABC):
    """Where keys live. `verify` is on every request's path; the rest is for `chronik keys`."""

    def create(
        self, name: str, scopes: Sequence[str], stream_prefixes: Sequence[str] = (), *, now: datetime
    ) -> tuple[ApiKey, str]:
        """Make a key; returns it and the token (shown once: only its hash is kept)."""
        if not name.strip():
            raise InvalidInput("a key needs a name (who or what uses it)")
        key = ApiKey(
            key_id=secrets.token_hex(6),
            name=name.strip(),
            scopes=check_scopes(scopes),
            stream_prefixes=tuple(prefix for prefix in stream_prefixes if prefix),
            created_at=now,
        )
        secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        self._insert(key, hash_secret(secret))
        return key, f"{TOKEN_PREFIX}_{key.key_id}_{secret}"

    def verify(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None. Constant-time in the secret."""
        parts = split_token(token)
        key_id, secret = parts if parts is not None else ("", token)
        found = self._find(key_id) if parts is not None else None
        stored = found[1] if found is not None else _DUMMY_HASH
        matches = hmac.compare_digest(stored, hash_secret(secret))
        if found is None or not matches or not found[0].active:
            return None
        return found[0]

    @abc.abstractmethod
    def _insert(self, key: ApiKey, secret_hash: str) -> None: ...

    @abc.abstractmethod
    def _find(self, key_id: str) -> tuple[ApiKey, str] | None: ...

    @abc.abstractmethod
    def list(self) -> list[ApiKey]: ...

    @abc.abstractmethod
    def revoke(self, key_id: str, *, now: datetime) -> bool:
        """Revoke a key (kept, marked revoked); False when no active key has that id."""

    @abc.abstractmethod
    def has_active_keys(self) -> bool: ...

    @abc.abstractmethod
    def requires_keys(self) -> bool:
        """Whether requests need a key: an active key exists, or a key was created (even one revoked
        since) after access was last opened (`open_access`), or ever if it never was."""

    def open_access(self, *, now: datetime) -> None:
        """Let requests without a key in again (loopback servers only); refused while a key is active."""
        active = [key.key_id for key in self.list() if key.active]
        if active:
            raise KeyRingError(
                f"{len(active)} key(s) are active ({', '.join(active)}): revoke them first "
                "(chronik keys revoke KEY_ID), then open access"
            )
        self._record_opening(now)

    @abc.abstractmethod
    def _record_opening(self, now: datetime) -> None: ...


class SQLKeyRing(KeyRing):
    """The `api_keys` table beside the events; subclasses say how to reach their database.

    Statements use `?` placeholders; a backend whose driver wants another style rewrites them in
    `_write`/`_query`.
    """

    SQL_CREATE: ClassVar[str]
    SQL_CREATE_ACCESS: ClassVar[str] = """CREATE TABLE IF NOT EXISTS api_access (
        id        INTEGER PRIMARY KEY CHECK (id = 1),   -- one row
        opened_at TEXT NOT NULL                         -- the last `chronik keys open-access`
    )"""
    SQL_COLUMNS: Final = "key_id, name, scopes, stream_prefixes, created_at, revoked_at, secret_sha256"

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._write(self.SQL_CREATE, ())
        self._write(self.SQL_CREATE_ACCESS, ())

    @abc.abstractmethod
    def _write(self, sql: str, params: Sequence[object]) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""

    @abc.abstractmethod
    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[str, ...]]: ...

    @staticmethod
    def _key(row: tuple[str, ...]) -> ApiKey:
        return ApiKey(
            key_id=row[0],
            name=row[1],
            scopes=tuple(item for item in row[2].split(",") if item),
            stream_prefixes=tuple(item for item in row[3].split(",") if item),
            created_at=parse_timestamp(row[4]),
            revoked_at=parse_timestamp(row[5]) if row[5] else None,
        )

    def _insert(self, key: ApiKey, secret_hash: str) -> None:
        if any("," in prefix for prefix in key.stream_prefixes):
            raise InvalidInput("a stream prefix must not contain ','")
        self._write(
            f"INSERT INTO api_keys ({self.SQL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key.key_id,
                key.name,
                ",".join(key.scopes),
                ",".join(key.stream_prefixes),
                format_timestamp(key.created_at),
                None,
                secret_hash,
            ),
        )

    def _find(self, key_id: str) -> tuple[ApiKey, str] | None:
        rows = self._query(f"SELECT {self.SQL_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        return None if not rows else (self._key(rows[0]), rows[0][6])

    def list(self) -> list[ApiKey]:
        rows = self._query(f"SELECT {self.SQL_COLUMNS} FROM api_keys ORDER BY created_at", ())
        return [self._key(row) for row in rows]

    def revoke(self, key_id: str, *, now: datetime) -> bool:
        changed = self._write(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (format_timestamp(now), key_id),
        )
        return bool(changed)

    def has_active_keys(self) -> bool:
        return bool(self._query("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1", ()))

    def requires_keys(self) -> bool:
        # Times are fixed-width UTC text, so text order is time order; `>=`: a key created in the
        # same microsecond as the opening closes access (the safe side).
        return bool(
            self._query(
                "SELECT 1 FROM api_keys WHERE revoked_at IS NULL "
                "OR created_at >= COALESCE((SELECT opened_at FROM api_access WHERE id = 1), '') LIMIT 1",
                (),
            )
        )

    def _record_opening(self, now: datetime) -> None:
        self._write(
            "INSERT INTO api_access (id, opened_at) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET opened_at = excluded.opened_at",
            (format_timestamp(now),),
        )


class SQLiteKeyRing(SQLKeyRing):
    SQL_CREATE = """CREATE TABLE IF NOT EXISTS api_keys (
        key_id          TEXT PRIMARY KEY,    -- 12 hex digits, the public half of a token
        name            TEXT NOT NULL,
        secret_sha256   TEXT NOT NULL,       -- the secret itself is never stored
        scopes          TEXT NOT NULL,       -- comma-separated: read, append, admin
        stream_prefixes TEXT NOT NULL,       -- comma-separated; empty: every stream
        created_at      TEXT NOT NULL,
        revoked_at      TEXT
    ) WITHOUT ROWID"""

    def _write(self, sql: str, params: Sequence[object]) -> int:
        with self.store.transaction() as uow:
            connection: sqlite3.Connection = uow.connection  # type: ignore[attr-defined]
            return connection.execute(sql, params).rowcount

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[str, ...]]:
        connection: sqlite3.Connection = self.store.connection()  # type: ignore[attr-defined]
        rows: list[tuple[str, ...]] = connection.execute(sql, params).fetchall()
        return rows


class PostgresKeyRing(SQLKeyRing):
    """On PostgreSQL the table lives in the store's schema, reached through its pooled connections
    (key administration never appends events, so it does not open a store unit of work)."""

    SQL_CREATE = """CREATE TABLE IF NOT EXISTS api_keys (
        key_id          text PRIMARY KEY,    -- 12 hex digits, the public half of a token
        name            text NOT NULL,
        secret_sha256   text NOT NULL,       -- the secret itself is never stored
        scopes          text NOT NULL,       -- comma-separated: read, append, admin
        stream_prefixes text NOT NULL,       -- comma-separated; empty: every stream
        created_at      text NOT NULL,
        revoked_at      text
    )"""

    def _write(self, sql: str, params: Sequence[object]) -> int:
        with self.store.pooled_connection() as connection, connection.transaction():  # type: ignore[attr-defined]
            return int(connection.execute(qmark_to_format(sql), params).rowcount)

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[str, ...]]:
        with self.store.pooled_connection() as connection:  # type: ignore[attr-defined]
            rows: list[tuple[str, ...]] = connection.execute(qmark_to_format(sql), params).fetchall()
            return rows


class MemoryKeyRing(KeyRing):
    """For `memory://` stores: the keys live as long as the store object."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[ApiKey, str]] = {}
        self._opened_at: datetime | None = None
        self._lock = threading.Lock()

    def _insert(self, key: ApiKey, secret_hash: str) -> None:
        with self._lock:
            self._keys[key.key_id] = (key, secret_hash)

    def _find(self, key_id: str) -> tuple[ApiKey, str] | None:
        return self._keys.get(key_id)

    def list(self) -> list[ApiKey]:
        return sorted((key for key, _ in self._keys.values()), key=lambda key: key.created_at)

    def revoke(self, key_id: str, *, now: datetime) -> bool:
        with self._lock:
            found = self._keys.get(key_id)
            if found is None or not found[0].active:
                return False
            self._keys[key_id] = (msgspec.structs.replace(found[0], revoked_at=now), found[1])
            return True

    def has_active_keys(self) -> bool:
        return any(key.active for key, _ in self._keys.values())

    def requires_keys(self) -> bool:
        opened = self._opened_at
        return any(key.active or opened is None or key.created_at >= opened for key, _ in self._keys.values())

    def _record_opening(self, now: datetime) -> None:
        with self._lock:
            self._opened_at = now


def keyring_for(store: EventStore) -> KeyRing:
    """The key ring kept in this store's database (one per store object)."""
    ring: KeyRing | None = getattr(store, "_chronik_keyring", None)
    if ring is not None:
        return ring
    from chronik.store.memory import MemoryStore
    from chronik.store.postgres import PostgresStore
    from chronik.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        ring = SQLiteKeyRing(store)
    elif isinstance(store, PostgresStore):
        ring = PostgresKeyRing(store)
    elif isinstance(store, MemoryStore):
        ring = MemoryKeyRing()
    else:
        raise KeyRingError(f"{type(store).__name__} has no key table")
    setattr(store, "_chronik_keyring", ring)  # noqa: B010 - one ring per store object, no contract change
    return ring
