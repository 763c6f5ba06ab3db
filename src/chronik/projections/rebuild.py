"""Replaying the log into another table set: blue/green rebuilds, `--as-of` builds, reconciliation.

Blue/green, as Marten does it: the rebuild writes the set `v<N+1>` while `v<N>` keeps serving
queries (and keeps being updated, inline or async). Each batch commits with the rebuild's own
checkpoint (`building_position`), so a rebuild that is stopped resumes where it was. The last
batch is applied inside a unit of work that holds the write lock: no append can slip between
"caught up" and the swap, and the swap itself is one registry-row update in that same
transaction, followed by dropping the old set. Queries read the registry and the tables in one
snapshot, so they see either the old set or the new one, never a missing table.

Nothing here runs side effects: a replay re-derives tables, it does not re-live history.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from chronik.projections.dialect import Dialect, SQLConnection, check_identifier
from chronik.projections.errors import (
    ProjectionError,
    ProjectionHandlerFailed,
    ProjectionMoved,
    ProjectionNotBuilt,
)
from chronik.projections.projection import Projection, ProjectionTx, live_slot

log = logging.getLogger("chronik.projections")

Progress = Callable[[int, int], None]
"""`progress(events_done, events_total)`: called after each committed batch.

Events, not log positions: PostgreSQL's positions are sparse (`xid << 20 | index`), so a rate or an
ETA computed from positions would be meaningless there. A replay counts the events it will apply
once (`Dialect.count_events`, one indexed count per round), and `events_done` is what it applied.
"""

DEFAULT_BATCH: int = 1000
FINAL_STEP_BATCHES: int = 4  # at most this many batches' worth of log is left for the locked step ...
MAX_ROUNDS: int = 8  # ... unless writers kept ahead of the rebuild for this many rounds
FINAL_STEP_ATTEMPTS: int = 50  # PostgreSQL: tries to find the log quiet enough to swap (see final_head)


class _EventCount:
    """A replay's progress in events: what it applied against how many it has to apply.

    The total is counted once per round (events of the projection's types up to that round's
    head) and grows only by the events that arrived since the last count.
    """

    def __init__(
        self,
        projection: Projection,
        event_types: Sequence[str],
        *,
        done_to: int = 0,
        recorded_until: datetime | None = None,
    ) -> None:
        self.projection = projection
        self.event_types = event_types
        self.recorded_until = recorded_until
        self.counted_to = done_to
        self.done = self.count(0, done_to) if done_to else 0  # a resumed rebuild's earlier work
        self.total = self.done

    def count(self, after: int, up_to: int) -> int:
        if up_to <= after:
            return 0
        dialect, store = self.projection.dialect, self.projection.store
        with dialect.read_snapshot(store) as connection:
            return dialect.count_events(connection, after, up_to, self.event_types, self.recorded_until)

    def extend_to(self, head: int) -> int:
        """Count the events up to `head` not counted yet; returns how many events are left to apply."""
        if head > self.counted_to:
            self.total += self.count(self.counted_to, head)
            self.counted_to = head
        return self.total - self.done

    def applied(self, events: int, progress: Progress | None) -> None:
        self.done += events
        self.total = max(self.total, self.done)
        self.report(progress)

    def report(self, progress: Progress | None) -> None:
        if progress is not None:
            progress(self.done, self.total)


class RebuildResult(msgspec.Struct, frozen=True):
    name: str
    old_version: int
    new_version: int
    position: int
    events_applied: int
    resumed: bool


def rebuild(
    projection: Projection, *, batch_size: int = DEFAULT_BATCH, progress: Progress | None = None
) -> RebuildResult:
    """Rebuild the projection from the log into a new table set and swap it in when caught up.

    Resumes an interrupted rebuild by the same code version; starts over if the code changed.
    A handler failure (`ProjectionHandlerFailed`) rolls back only its batch: the new set is kept
    with every batch before it (`projections status` shows it under "rebuilding"), so fixing the
    data or the handler and running the rebuild again resumes from there.
    """
    try:
        return _rebuild(projection, batch_size=batch_size, progress=progress)
    except ProjectionHandlerFailed as failed:
        row = projection.registry_row()
        if row is None or row.building_version is None:
            raise
        raise failed.with_note(
            f"the rebuild stopped; table set v{row.building_version} is kept up to position "
            f"{row.building_position} and the next rebuild by this code version resumes it"
        ) from failed.error


def _rebuild(projection: Projection, *, batch_size: int, progress: Progress | None) -> RebuildResult:
    store, dialect, name = projection.store, projection.dialect, projection.name
    projection.ensure()
    with store.transaction() as uow:
        connection = dialect.write_connection(uow)
        row = dialect.registry_row(connection, name)
        assert row is not None
        resumed = (
            row.building_version is not None
            and row.building_code_version == projection.version
            and row.building_position is not None
        )
        if resumed:
            assert row.building_version is not None and row.building_position is not None
            target, position = row.building_version, row.building_position
        else:
            if row.building_version is not None:  # an abandoned rebuild by other code: drop its tables
                for table in projection.table_set(live_slot(row.building_version)).values():
                    dialect.drop_table(connection, table)
            target = max(row.live_version, row.building_version or 0) + 1
            projection.create_tables(connection, live_slot(target))
            dialect.start_building(connection, name, target, projection.version)
            position = 0
    old_version = row.live_version
    slot = live_slot(target)
    event_types = projection.event_types()
    counted = _EventCount(projection, event_types, done_to=position)
    applied = 0
    rounds = 0
    while True:
        head = store.head_position()
        # Converge: each round replays up to the head seen at its start, without holding the lock.
        # Once what is left is small (or writers outpace us for too many rounds), the rest is
        # applied in the final, locked transaction: blocking writers briefly is the price of the swap.
        # "Small" is counted in events: positions say nothing about it on PostgreSQL.
        left = counted.extend_to(head)
        if rounds == 0:
            counted.report(progress)  # before any batch: the bar starts its clock here
        if left <= FINAL_STEP_BATCHES * batch_size or rounds >= MAX_ROUNDS:
            break
        rounds += 1
        while position < head:
            page = store.read_all(position + 1, to_position=head, event_types=event_types, limit=batch_size)
            new_position = page[-1].global_position if len(page) >= batch_size else head
            with store.transaction() as uow:
                connection = dialect.write_connection(uow)
                if not dialect.advance_building(connection, name, target, position, new_position):
                    raise ProjectionMoved(name)
                projection.apply(projection.tx(connection, slot), page, None)
            applied += len(page)
            position = new_position
            counted.applied(len(page), progress)
    # The last batch and the swap, in one transaction that holds the registry row (SQLite: the
    # write lock): no inline append can commit between "caught up" and "swapped", so the new set
    # misses nothing. On PostgreSQL the dialect may ask to try again in a moment (`final_head`).
    for attempt in range(FINAL_STEP_ATTEMPTS):
        with store.transaction() as uow:
            connection = dialect.write_connection(uow)
            dialect.lock_registry_row(connection, name)
            final_head = dialect.final_head(store, connection)
            if final_head is not None:
                rest = dialect.read_events(store, connection, position + 1, final_head, event_types)
                projection.apply(projection.tx(connection, slot), rest, None)
                if not dialect.swap(connection, name, target, position, final_head):
                    raise ProjectionMoved(name)
                for table in projection.table_set(live_slot(old_version)).values():
                    dialect.drop_table(connection, table)
                break
        time.sleep(min(0.2, 0.002 * 2**attempt))
    else:
        raise ProjectionError(
            f"rebuild of {name!r}: writers never left a moment to swap in {FINAL_STEP_ATTEMPTS} attempts; "
            "the new table set is kept and a later rebuild resumes it"
        )
    applied += len(rest)
    counted.applied(len(rest), progress)
    return RebuildResult(name, old_version, target, final_head, applied, resumed)


# -- scratch table sets: --as-of and reconciliation -------------------------------------------


class ScratchView:
    """A table set built outside the live one (a time-machine build); query it like the projection."""

    def __init__(self, projection: Projection, slot: str, position: int) -> None:
        self.projection = projection
        self.slot = slot
        self.position = position  # the last log position included
        self.tables = projection.table_set(slot)

    def query(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.projection.dialect.read_snapshot(self.projection.store) as connection:
            return ProjectionTx(connection, self.tables, None, self.projection.dialect.statement).query(
                statement, parameters
            )

    def drop(self) -> None:
        drop_scratch(self.projection, self.slot)


def as_of_label(position: int | None, at: datetime | None) -> str:
    if at is not None:
        return "asof_" + re.sub(r"[^0-9]", "", at.isoformat())[:14]
    return f"asof_p{position}"


def build_scratch(
    projection: Projection,
    label: str,
    *,
    to_position: int | None = None,
    recorded_until: datetime | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> ScratchView:
    """Replay the log into the scratch set `label` up to a position and/or a recording time.

    The live set, the registry and other scratch sets are not touched. `recorded_until` keeps what
    the store knew at that moment; `recorded_at` never decreases along the log (a store
    guarantee), so the replay stops at the first event recorded later.
    """
    store, dialect = projection.store, projection.dialect
    slot = "scratch_" + check_identifier(label, "scratch label")
    check_identifier(slot, "scratch label")
    projection.ensure()
    with store.transaction() as uow:
        projection.create_tables(dialect.write_connection(uow), slot)
    try:
        return _replay_into_scratch(projection, slot, to_position, recorded_until, batch_size, progress)
    except BaseException as error:
        try:
            drop_scratch(projection, slot)  # a half-built scratch set answers nothing correctly
        except Exception:  # the store went away too: keep the original error, say what is left
            log.warning("could not drop the half-built scratch set %s of %s", slot, projection.name)
        if isinstance(error, ProjectionHandlerFailed):
            raise error.with_note("the scratch tables were dropped") from error.error
        raise


def _replay_into_scratch(
    projection: Projection,
    slot: str,
    to_position: int | None,
    recorded_until: datetime | None,
    batch_size: int,
    progress: Progress | None,
) -> ScratchView:
    store, dialect = projection.store, projection.dialect
    head = store.head_position()
    limit = head if to_position is None else min(to_position, head)
    event_types = projection.event_types()
    counted = _EventCount(projection, event_types, recorded_until=recorded_until)
    if progress is not None:
        counted.extend_to(limit)
        counted.report(progress)  # before any batch: the bar starts its clock here
    position = 0
    reached = 0
    while position < limit:
        page = store.read_all(position + 1, to_position=limit, event_types=event_types, limit=batch_size)
        done = len(page) < batch_size
        if recorded_until is not None:
            kept = [event for event in page if event.recorded_at <= recorded_until]
            done = done or len(kept) < len(page)
            page = kept
        if page:
            with store.transaction() as uow:
                projection.apply(projection.tx(dialect.write_connection(uow), slot), page, None)
            reached = page[-1].global_position
        position = limit if done else page[-1].global_position
        counted.applied(len(page), progress)
        if done:
            break
    if recorded_until is None:
        reached = limit
    return ScratchView(projection, slot, reached)


def build_as_of(
    projection: Projection,
    *,
    position: int | None = None,
    at: datetime | None = None,
    label: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> ScratchView:
    """The time machine: the projection as it was at a log position or a moment, in scratch tables.

    A position past the log's head is accepted and means the head: the scratch set is labelled by
    the head it was built to (`asof_p<head>`, `view.position`), never by a position that no
    event has reached, so the label always says what the tables hold.
    """
    if position is None and at is None:
        raise ProjectionError("build_as_of needs a position or a time")
    if position is not None:
        position = min(position, projection.store.head_position())
    return build_scratch(
        projection,
        label or as_of_label(position, at),
        to_position=position,
        recorded_until=at,
        batch_size=batch_size,
        progress=progress,
    )


def scratch_labels(projection: Projection) -> list[str]:
    """The labels of this projection's scratch sets (time-machine builds) still in the database."""
    prefix = f"{projection.name}__"
    with projection.dialect.read_snapshot(projection.store) as connection:
        tables = projection.dialect.tables_with_prefix(connection, prefix)
    slots = {table.rsplit("__", 1)[1] for table in tables if table.count("__") == 2}
    return sorted(slot.removeprefix("scratch_") for slot in slots if slot.startswith("scratch_"))


def drop_scratch_label(projection: Projection, label: str) -> None:
    drop_scratch(projection, "scratch_" + check_identifier(label, "scratch label"))


def drop_scratch(projection: Projection, slot: str) -> None:
    with projection.store.transaction() as uow:
        connection = projection.dialect.write_connection(uow)
        for table in projection.table_set(slot).values():
            projection.dialect.drop_table(connection, table)


# -- reconciliation ---------------------------------------------------------------------------


class RowDifference(msgspec.Struct, frozen=True):
    """One row that differs between the live tables and a fresh rebuild from the log.

    Or a whole live table that is gone (kind "table missing", `physical` its name, no key): someone
    dropped it by hand; its rows cannot be compared, and a rebuild recreates it.
    """

    table: str  # the logical table name
    kind: str  # "changed", "missing" (in the rebuild, not live), "unexpected" (live, not in the rebuild),
    # or "table missing" (the live table itself does not exist)
    key: dict[str, Any]  # the primary key (every column when the table has none)
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None
    physical: str = ""  # the live table's name in the database ("table missing" only)

    def describe(self) -> str:
        if self.kind == "table missing":
            return f"live table {self.physical} ({self.table}) is missing"
        key = ", ".join(f"{column}={value!r}" for column, value in self.key.items())
        if self.kind == "changed":
            assert self.live is not None and self.rebuilt is not None
            changes = ", ".join(
                f"{column}: live {self.live[column]!r} != rebuilt {self.rebuilt[column]!r}"
                for column in self.live
                if self.live[column] != self.rebuilt.get(column)
            )
            return f"{self.table} [{key}] differs: {changes}"
        if self.kind == "missing":
            return f"{self.table} [{key}] is missing from the live table (rebuilt: {self.rebuilt})"
        return f"{self.table} [{key}] is in the live table but not in the rebuild (live: {self.live})"


class ReconcileReport(msgspec.Struct, frozen=True):
    name: str
    live_version: int
    position: int
    differences: list[RowDifference]

    @property
    def ok(self) -> bool:
        return not self.differences


def reconcile(
    projection: Projection, *, batch_size: int = DEFAULT_BATCH, progress: Progress | None = None
) -> ReconcileReport:
    """Rebuild the projection into scratch tables from the log and compare them with the live ones.

    The scratch set is built up to the live checkpoint in batches; the comparison then runs in a
    unit of work (holding the write lock) that first brings the scratch set to the checkpoint as it
    is at that moment, so both sides cover exactly the same events. The scratch set is dropped.

    A projection this store has never built is refused (`ProjectionNotBuilt`), not registered:
    reconciling is a check, and a check that creates what it checks always passes.
    """
    store, dialect, name = projection.store, projection.dialect, projection.name
    row = projection.registry_row()
    if row is None:
        raise ProjectionNotBuilt(name)
    if row.code_version != projection.version:
        raise ProjectionError(
            f"the live tables of {name!r} were built by code version {row.code_version}, and this is "
            f"version {projection.version}: they differ by design; rebuild it before reconciling"
        )
    label = f"reconcile_{os.getpid()}_{threading.get_ident() % 100_000}"  # concurrent runs do not collide
    view = build_scratch(
        projection, label, to_position=row.position, batch_size=batch_size, progress=progress
    )
    try:
        with store.transaction() as uow:
            connection = dialect.write_connection(uow)
            current = dialect.lock_registry_row(connection, name)  # no batch commits meanwhile
            assert current is not None
            if current.position > view.position:
                rest = dialect.read_events(
                    store, connection, view.position + 1, current.position, projection.event_types()
                )
                projection.apply(projection.tx(connection, view.slot), rest, None)
            live = projection.table_set(live_slot(current.live_version))
            differences: list[RowDifference] = []
            for table in projection.tables:
                differences.extend(_compare(dialect, connection, table, live[table], view.tables[table]))
    except ProjectionHandlerFailed as failed:
        raise failed.with_note("the scratch tables were dropped") from failed.error
    finally:
        view.drop()
    return ReconcileReport(name, current.live_version, current.position, differences)


def _compare(
    dialect: Dialect, connection: SQLConnection, table: str, live: str, rebuilt: str
) -> list[RowDifference]:
    columns = dialect.columns(connection, live)
    if not columns:  # the catalog knows no such table: it was dropped behind chronik's back
        return [RowDifference(table, "table missing", {}, None, None, physical=live)]
    names = [column for column, _ in columns]
    key_columns = [column for column, pk in sorted(columns, key=lambda item: item[1]) if pk] or names
    listed = ", ".join(f'"{column}"' for column in names)  # names come from the database's own catalog
    only_live = connection.execute(
        f'SELECT {listed} FROM "{live}" EXCEPT SELECT {listed} FROM "{rebuilt}"'
    ).fetchall()
    only_rebuilt = connection.execute(
        f'SELECT {listed} FROM "{rebuilt}" EXCEPT SELECT {listed} FROM "{live}"'
    ).fetchall()

    def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[column] for column in key_columns)

    live_rows = {key_of(row): row for row in (dict(zip(names, values, strict=True)) for values in only_live)}
    rebuilt_rows = {
        key_of(row): row for row in (dict(zip(names, values, strict=True)) for values in only_rebuilt)
    }
    differences = []
    for key in sorted(live_rows.keys() | rebuilt_rows.keys(), key=repr):
        live_row, rebuilt_row = live_rows.get(key), rebuilt_rows.get(key)
        kind = "changed" if live_row and rebuilt_row else ("unexpected" if live_row else "missing")
        differences.append(
            RowDifference(table, kind, dict(zip(key_columns, key, strict=True)), live_row, rebuilt_row)
        )
    return differences
