"""The projection API: declare tables and handlers; query through the projection.

    class CartsByStatus(Projection):
        name = "carts_by_status"
        version = 1                                     # bump when the code changes; then rebuild
        tables = ("carts",)
        schema = ("CREATE TABLE {carts} (cart_id TEXT PRIMARY KEY, status TEXT NOT NULL)",)

        @handles("ItemAdded")
        def item_added(self, tx: ProjectionTx, event: RecordedEvent) -> None:
            tx.execute("INSERT INTO {carts} VALUES (?, 'open') ON CONFLICT DO NOTHING", (event.stream,))

    carts = CartsByStatus(store)
    carts.attach_inline()                     # or: ProjectionRunner(store, [carts]).start()
    position = store.append(...).last_position
    carts.wait_until(position, timeout=5)      # read-your-writes
    carts.query("SELECT status FROM {carts} WHERE cart_id = ?", ("cart-1",))

Why tables are named through placeholders: a projection's tables exist in several versions at
once (the live set `<name>__<table>__v<N>`, a rebuild's `v<N+1>`, scratch sets for `--as-of` and
reconciliation), so handlers and queries never spell a physical name: the projection object maps
`{carts}` to the set it is working on, and queries go to the live set the registry names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar

from chronik.events.envelope import RecordedEvent, check_event_type
from chronik.projections.dialect import (
    BatchFailed,
    Dialect,
    RegistryRow,
    SQLConnection,
    check_identifier,
    dialect_for,
)
from chronik.projections.errors import (
    InvalidProjection,
    ProjectionError,
    ProjectionHandlerFailed,
    ProjectionNotFound,
    ProjectionTimeout,
)
from chronik.store.contract import EventStore

SideEffect = Callable[[Any, RecordedEvent], None]
"""`side_effect(projection, event)`: something outside the database (an e-mail). Never run on replay."""

Handler = Callable[[Any, "ProjectionTx", RecordedEvent], None]
_H = TypeVar("_H", bound=Handler)

_PLACEHOLDER: Final = re.compile(r"\{([a-z][a-z0-9_]*)\}")
_CREATE: Final = re.compile(
    r"\s*CREATE\s+(?:UNIQUE\s+)?(?P<kind>TABLE|INDEX|VIEW|TRIGGER)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?:\{(?P<name>[a-z][a-z0-9_]*)\})?",
    re.IGNORECASE,
)


QUERY_ATTEMPTS: Final = 3  # a query racing swaps; each retry follows a committed swap


class _Raised(Exception):
    """A handler's exception and the event it was handling, on its way out of a batch."""

    def __init__(self, event: RecordedEvent, error: Exception) -> None:
        super().__init__(str(error))
        self.event = event
        self.error = error


def handles(*event_types: str, side_effect: SideEffect | None = None) -> Callable[[_H], _H]:
    """Mark a method as the handler of these event types.

    `side_effect(projection, event)` runs after the handler's batch has committed, only when the
    projection is kept live by its runner: never during a rebuild, an `--as-of` build or a
    reconciliation, so replaying history does not send last year's e-mails again.
    """
    for event_type in event_types:
        check_event_type(event_type)
    if not event_types:
        raise InvalidProjection("@handles needs at least one event type")

    def mark(function: _H) -> _H:
        function.__chronik_handles__ = (event_types, side_effect)  # type: ignore[attr-defined]
        return function

    return mark


class ProjectionTx:
    """A projection's handle on one table set inside one transaction.

    `{table}` placeholders in SQL are replaced by the physical names of the set being written;
    each distinct statement is formatted once and cached (rebuilds run the same few statements
    hundreds of thousands of times).
    """

    __slots__ = ("_cache", "_translate", "connection", "tables")

    def __init__(
        self,
        connection: SQLConnection,
        tables: Mapping[str, str],
        cache: dict[str, str] | None = None,
        translate: Callable[[str], str] | None = None,
    ) -> None:
        self.connection = connection
        self.tables = tables
        self._cache: dict[str, str] = {} if cache is None else cache
        self._translate = translate  # `?` placeholders to the driver's style (`Dialect.statement`)

    def sql(self, statement: str) -> str:
        formatted = self._cache.get(statement)
        if formatted is None:
            formatted = _format(statement, self.tables)
            if self._translate is not None:
                formatted = self._translate(formatted)
            self._cache[statement] = formatted
        return formatted

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> Any:
        """Run one statement on the table set. On PostgreSQL a batch's writes are pipelined: read a
        write's `rowcount` before issuing the next statement (later it is an error, not a guess)."""
        return self.connection.execute(self.sql(statement), parameters)

    def executemany(self, statement: str, parameters: Any) -> Any:
        return self.connection.executemany(self.sql(statement), parameters)

    def query(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.connection.execute(self.sql(statement), parameters).fetchall()
        return rows


def _format(statement: str, tables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in tables:
            raise InvalidProjection(f"SQL names table {{{name}}}, which is not declared in `tables`")
        # Unquoted on purpose: physical names are checked identifiers (lower-case, digits, `_`,
        # always containing `__`, so never a keyword), and staying bare lets a schema derive
        # index names from them: `CREATE INDEX {carts}_status ON {carts} (status)`.
        return tables[name]

    return _PLACEHOLDER.sub(replace, statement)


def table_names(projection: str, tables: Sequence[str], slot: str) -> dict[str, str]:
    """Logical name -> physical name `<projection>__<table>__<slot>` (all parts checked identifiers)."""
    return {table: f"{projection}__{table}__{slot}" for table in tables}


def live_slot(version: int) -> str:
    return f"v{version}"


class Projection:
    """Base class of projections. Subclass it, declare `name`, `version`, `tables`, `schema`, handlers.

    An instance is bound to one store: `CartsByStatus(store)`. Projections need a store with a
    SQL dialect (SQLite, PostgreSQL): their tables live in the store's database so that
    their writes commit with their checkpoint.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ()
    schema: ClassVar[tuple[str, ...]] = ()
    _handlers: ClassVar[dict[str, tuple[tuple[Handler, SideEffect | None], ...]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # By attribute name, subclasses last: an overriding method replaces its base's handler
        # instead of running beside it (an unmarked override removes it).
        by_name: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            by_name.update(vars(klass))
        handlers: dict[str, list[tuple[Handler, SideEffect | None]]] = {}
        for attribute in by_name.values():
            marked = getattr(attribute, "__chronik_handles__", None)
            if marked is None:
                continue
            event_types, side_effect = marked
            for event_type in event_types:
                handlers.setdefault(event_type, []).append((attribute, side_effect))
        cls._handlers = {event_type: tuple(found) for event_type, found in handlers.items()}
        if "name" in vars(cls):  # a concrete projection: check it now, not at the first write
            cls.check_declaration()

    @classmethod
    def check_declaration(cls) -> None:
        check_identifier(getattr(cls, "name", None), "projection name")
        if not isinstance(cls.version, int) or isinstance(cls.version, bool) or cls.version < 1:
            raise InvalidProjection(f"projection {cls.name!r}: version must be an integer >= 1")
        if not cls.tables:
            raise InvalidProjection(f"projection {cls.name!r} declares no tables")
        for table in cls.tables:
            check_identifier(table, f"table name of projection {cls.name!r}")
        declared = set(cls.tables)
        created: set[str] = set()
        for statement in cls.schema:
            used = set(_PLACEHOLDER.findall(statement))
            unknown = used - declared
            if unknown:
                raise InvalidProjection(
                    f"projection {cls.name!r}: schema names undeclared table(s) {sorted(unknown)}"
                )
            creates = _CREATE.match(statement)
            if creates is None:
                continue
            if creates.group("name") is None:
                # Every object must carry a table's placeholder in its own name: two versions of the
                # set exist at once during a rebuild, and a fixed name would collide (or be shared).
                raise InvalidProjection(
                    f"projection {cls.name!r}: {creates.group('kind').upper()} names must start with a "
                    f"table placeholder, e.g. {{table}}_by_status: {statement.strip()[:80]!r}"
                )
            if creates.group("kind").upper() == "TABLE":
                created.add(creates.group("name"))
        missing = declared - created
        if missing:
            raise InvalidProjection(
                f"projection {cls.name!r}: no `CREATE TABLE {{name}}` in schema for {sorted(missing)}"
            )
        if not cls._handlers:
            raise InvalidProjection(f"projection {cls.name!r} has no @handles methods")

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.dialect: Dialect = dialect_for(store)
        self._sql_caches: dict[str, dict[str, str]] = {}
        self._registered = False

    def tx(self, connection: SQLConnection, slot: str) -> ProjectionTx:
        """A `ProjectionTx` on the table set `slot` (formatted statements cached per set)."""
        return ProjectionTx(
            connection, self.table_set(slot), self._sql_caches.setdefault(slot, {}), self.dialect.statement
        )

    # -- what it reads -----------------------------------------------------------------------

    @classmethod
    def event_types(cls) -> list[str]:
        """The event types this projection handles: the log is read filtered by them."""
        return sorted(cls._handlers)

    @classmethod
    def has_side_effects(cls) -> bool:
        return any(effect is not None for pairs in cls._handlers.values() for _, effect in pairs)

    def apply(
        self,
        tx: ProjectionTx,
        events: Sequence[RecordedEvent],
        side_effects: list[tuple[SideEffect, RecordedEvent]] | None,
        side_effects_after: int = 0,
    ) -> None:
        """Run the handlers of `events` against `tx`'s table set.

        When `side_effects` is a list, the side effects of events after `side_effects_after`
        are collected into it, to be run once the transaction has committed; replays pass None.
        A handler that raises (or whose SQL fails) becomes `ProjectionHandlerFailed`, naming the
        event and chained to the cause; the caller's unit of work then rolls the batch back.
        """
        # The whole batch's statements go out together where the database allows it (PostgreSQL's
        # pipeline mode): one round trip per batch instead of one per statement.
        try:
            with self.dialect.batched_writes(tx.connection):
                self._handle(tx, events, side_effects, side_effects_after)
        except _Raised as raised:  # statements ran one at a time: this event's failed
            raise ProjectionHandlerFailed(self.name, raised.event, raised.error) from raised.error
        except BatchFailed as failed:
            if self.dialect.is_unavailable(failed.error):
                raise failed.error from None  # a lock timeout, a deadlock: nothing to name
            # Sent as a whole: a statement's failure surfaced later than the event that issued it.
            # The dialect put the transaction back where the batch began; run it again unbatched.
            try:
                self._handle(tx, events, None, 0)
            except _Raised as raised:
                raise ProjectionHandlerFailed(self.name, raised.event, raised.error) from raised.error
            cause = failed.error.error if isinstance(failed.error, _Raised) else failed.error
            batch = (events[0].global_position, events[-1].global_position) if events else (0, 0)
            raise ProjectionHandlerFailed(self.name, None, cause, batch=batch) from cause

    def _handle(
        self,
        tx: ProjectionTx,
        events: Sequence[RecordedEvent],
        side_effects: list[tuple[SideEffect, RecordedEvent]] | None,
        side_effects_after: int,
    ) -> None:
        handlers = self._handlers
        for event in events:
            for handler, side_effect in handlers.get(event.type, ()):
                try:
                    handler(self, tx, event)
                except Exception as error:
                    if self.dialect.is_unavailable(error):
                        raise  # the database's trouble, not the handler's: retryable as it is
                    raise _Raised(event, error) from error
                if (
                    side_effect is not None
                    and side_effects is not None
                    and event.global_position > side_effects_after
                ):
                    side_effects.append((side_effect, event))

    # -- tables --------------------------------------------------------------------------------

    def table_set(self, slot: str) -> dict[str, str]:
        return table_names(self.name, self.tables, slot)

    def create_tables(self, connection: SQLConnection, slot: str) -> dict[str, str]:
        """Create one table set from `schema` (dropping a leftover set of the same slot first)."""
        tables = self.table_set(slot)
        for physical in tables.values():
            self.dialect.drop_table(connection, physical)
        for statement in self.schema:
            connection.execute(_format(statement, tables))
        return tables

    def ensure(self) -> RegistryRow:
        """Register the projection (and create its first live table set) if this database lacks it."""
        with self.dialect.read_snapshot(self.store) as connection:
            row = self.dialect.registry_row(connection, self.name)
        if row is not None:
            self._registered = True
            return row
        with self.store.transaction() as uow:
            connection = self.dialect.write_connection(uow)
            self.dialect.ensure_registry(connection)
            row = self.dialect.registry_row(connection, self.name)
            if row is None:
                self.create_tables(connection, live_slot(1))
                self.dialect.insert_registry_row(connection, self.name, self.version)
                row = self.dialect.registry_row(connection, self.name)
        assert row is not None
        self._registered = True
        return row

    def registry_row(self) -> RegistryRow | None:
        with self.dialect.read_snapshot(self.store) as connection:
            return self.dialect.registry_row(connection, self.name)

    # -- reading the live tables -------------------------------------------------------------

    def query(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a SELECT against the live table set (`{table}` placeholders), in one read snapshot."""
        if not self._registered:
            self.ensure()
        for attempt in range(1, QUERY_ATTEMPTS + 1):
            try:
                with self.dialect.read_snapshot(self.store) as connection:
                    row = self.dialect.registry_row(connection, self.name)
                    if row is None:
                        raise ProjectionError(
                            f"projection {self.name!r} is no longer registered in {self.store!r}"
                        )
                    return self.tx(connection, live_slot(row.live_version)).query(statement, parameters)
            except Exception as error:
                # PostgreSQL: the snapshot named the old set, but a swap dropped it before this
                # statement could lock it (the drop waited for earlier readers, this one waited for
                # the drop). A new snapshot names the new set.
                if attempt == QUERY_ATTEMPTS or not self.dialect.table_vanished(error):
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises

    def position(self) -> int:
        """The checkpoint of the live table set: every event up to here is in it."""
        row = self.registry_row()
        return 0 if row is None else row.position

    def wait_until(self, position: int, timeout: float = 10.0) -> int:
        """Block until the live tables include every event up to `position` (read-your-writes).

        Pass the position an append returned (`result.last_position`). Returns the position
        reached; raises `ProjectionTimeout` naming the projection and both positions otherwise.
        Inline projections return at once (their checkpoint commits with the append).
        """
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            reached = self.position()
            if reached >= position:
                return reached
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProjectionTimeout(self.name, position, reached, timeout)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)

    # -- modes ---------------------------------------------------------------------------------

    def attach_inline(self) -> Callable[[], None]:
        """Keep the live tables current inside every append's own transaction; returns a detacher."""
        from chronik.projections.engine import attach_inline

        return attach_inline(self)

    def __repr__(self) -> str:
        return f"<projection {self.name} v{self.version} on {self.store!r}>"


# -- finding projections by name (the CLI) ---------------------------------------------------

_REGISTERED: dict[str, type[Projection]] = {}


def register_projection(cls: type[Projection]) -> type[Projection]:
    """Make a projection class findable by name (`chronik projections rebuild NAME`); a decorator too."""
    if not (isinstance(cls, type) and issubclass(cls, Projection)):
        raise InvalidProjection(f"register_projection expects a Projection subclass, got {cls!r}")
    cls.check_declaration()
    existing = _REGISTERED.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise InvalidProjection(
            f"two projections are named {cls.name!r}: {existing.__module__}.{existing.__qualname__} "
            f"and {cls.__module__}.{cls.__qualname__}"
        )
    _REGISTERED[cls.name] = cls
    return cls


def registered_projections() -> dict[str, type[Projection]]:
    return dict(sorted(_REGISTERED.items()))


def projection_named(name: str) -> type[Projection]:
    try:
        return _REGISTERED[name]
    except KeyError:
        raise ProjectionNotFound(name, sorted(_REGISTERED)) from None
