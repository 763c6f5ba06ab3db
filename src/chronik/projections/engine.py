"""Keeping a projection's live tables current: inline (in the append's transaction) or async (a runner).

Exactly once, both ways: a batch's table writes and the registry update that moves the checkpoint
past it are made through one unit of work, and that update only matches the row if the checkpoint
is still where the batch started (`Dialect.advance`). A worker whose view is stale (another
runner got there first, or a rebuild swapped the tables) changes no row, and its batch is rolled
back instead of being applied twice.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

import msgspec

from chronik.events.envelope import RecordedEvent
from chronik.projections.errors import (
    InvalidProjection,
    ProjectionError,
    ProjectionHandlerFailed,
    ProjectionMoved,
)
from chronik.projections.projection import Projection, SideEffect, live_slot
from chronik.store.contract import EventStore, UnitOfWork

log = logging.getLogger("chronik.projections")


# -- inline --------------------------------------------------------------------------------------


def attach_inline(projection: Projection) -> Callable[[], None]:
    """Apply the projection inside every append of this store object; returns a detacher.

    The store calls the hook in the append's unit of work, so the rows and the checkpoint commit
    with the events: the projection is never behind a committed append, and if a handler fails,
    the append fails. Side effects are refused here: an inline handler runs before the append
    commits, and an e-mail cannot be rolled back with it; run such projections async.

    Every process that appends must attach the inline projection. On SQLite, if one does not, the
    next hooked append first applies the events it missed (read back from the log, same
    transaction); on PostgreSQL a hooked append applies only its own events (see postgres.py).
    """
    if projection.has_side_effects():
        raise InvalidProjection(
            f"projection {projection.name!r} declares side effects; inline handlers run before the "
            "append commits, so run it async (ProjectionRunner) instead"
        )
    projection.ensure()
    catch_up(projection)  # apply the backlog outside the append path, in ordinary batches
    return projection.store.add_append_hook(functools.partial(_inline_hook, projection))


def _inline_hook(projection: Projection, uow: UnitOfWork, events: Sequence[RecordedEvent]) -> None:
    dialect = projection.dialect
    connection = dialect.write_connection(uow)
    # Locked until the append commits: inline appends of one projection (and a swap) take turns.
    row = dialect.lock_registry_row(connection, projection.name)
    if row is None:
        raise ProjectionError(f"projection {projection.name!r} is attached inline but not registered")
    last = events[-1].global_position
    if not dialect.positions_in_commit_order:
        # PostgreSQL: positions were assigned before commit, so a later-positioned append may have
        # held the lock first and moved the checkpoint past ours. Nobody else can have applied
        # these events (they are not committed), so apply exactly them, and never move the
        # checkpoint back. The checkpoint then means "every event of every transaction that held
        # this lock" (see projections/postgres.py).
        if row.code_version != projection.version:
            return
        handled = projection._handlers
        mine = [event for event in events if event.type in handled]
        projection.apply(projection.tx(connection, live_slot(row.live_version)), mine, None)
        if not dialect.advance_inline(connection, projection.name, row.live_version, last):
            raise ProjectionMoved(projection.name)
        return
    if row.position >= last or row.code_version != projection.version:
        # Already applied; or the live set was built by other code (a rolling deploy: before the
        # swap the old code keeps it, after the swap the new code does). The matching code's
        # next append applies what this one leaves, from the log.
        return
    handled = projection._handlers
    fresh = [event for event in events if event.global_position > row.position and event.type in handled]
    first = events[0].global_position
    backlog: list[RecordedEvent] = []
    if row.position < first - 1:
        # Appended by a writer without this hook. We hold the unit of work, so the log below
        # `first` is complete and stable (SQLite: this thread's connection is in the transaction).
        backlog = projection.store.read_all(
            row.position + 1, to_position=first - 1, event_types=projection.event_types()
        )
    projection.apply(projection.tx(connection, live_slot(row.live_version)), [*backlog, *fresh], None)
    if not dialect.advance(connection, projection.name, row.live_version, row.position, last):
        raise ProjectionMoved(projection.name)


# -- async -----------------------------------------------------------------------------------


class BatchResult(msgspec.Struct, frozen=True):
    applied: int  # events handed to handlers
    position: int  # the checkpoint after the batch
    head: int  # the log's head when the batch was read
    stale: bool = False  # the live set was built by another code version: nothing was applied


def run_batch(projection: Projection, batch_size: int = 500) -> BatchResult:
    """Apply the next batch of the log to the live tables and move the checkpoint, in one unit of work.

    The log is read outside the transaction (reads never block writers); the transaction then
    checks that the checkpoint has not moved, writes the rows, moves the checkpoint, and commits.
    Side effects run after the commit: at most once (a crash right after the commit skips them;
    give them an outbox table in the same transaction if they must happen at least once), and
    only for events appended after the projection was registered (older events are history).
    """
    store = projection.store
    row = projection.ensure()
    head = store.head_position()
    if row.code_version != projection.version:
        # Blue/green: each code version keeps only the table set it built. Old code stops at the
        # swap; new code waits for it (or rebuilds: `ProjectionRunner(rebuild_stale=True)`).
        return BatchResult(0, row.position, head, stale=True)
    if row.position >= head:
        return BatchResult(0, row.position, head)
    page = store.read_all(
        row.position + 1, to_position=head, event_types=projection.event_types(), limit=batch_size
    )
    # A short page means everything up to `head` was scanned, including events of other types.
    new_position = page[-1].global_position if len(page) >= batch_size else head
    effects: list[tuple[SideEffect, RecordedEvent]] = []
    try:
        with store.transaction() as uow:
            connection = projection.dialect.write_connection(uow)
            if not projection.dialect.advance(
                connection, projection.name, row.live_version, row.position, new_position
            ):
                raise ProjectionMoved(projection.name)
            projection.apply(
                projection.tx(connection, live_slot(row.live_version)), page, effects, row.side_effects_after
            )
    except ProjectionMoved:
        return BatchResult(0, row.position, head)
    except ProjectionHandlerFailed as failed:
        raise failed.with_note(
            f"the batch was rolled back: the live tables stay at position {row.position} until the "
            "handler or the data is fixed"
        ) from failed.error
    for effect, event in effects:
        try:
            effect(projection, event)
        except Exception:
            log.exception(
                "side effect %s of projection %s failed for event %s at position %d",
                getattr(effect, "__name__", effect),
                projection.name,
                event.event_id,
                event.global_position,
            )
    return BatchResult(len(page), new_position, head)


def catch_up(projection: Projection, batch_size: int = 500) -> int:
    """Run batches until the checkpoint reaches the head seen at the start; returns events applied."""
    target = projection.store.head_position()
    applied = 0
    while True:
        result = run_batch(projection, batch_size)
        applied += result.applied
        if result.stale:
            log.warning(
                "projection %s: the live tables were built by another code version than %d; "
                "they are left to it until `chronik projections rebuild %s` swaps in this one",
                projection.name,
                projection.version,
                projection.name,
            )
            return applied
        if result.position >= target:
            return applied


class ProjectionRunner:
    """Keeps async projections current: a small, self-contained polling loop on one thread.

    Each round runs one batch per projection. When no projection advanced, it waits for new
    events: through `store.wait_for_events(after, timeout)` when the backend offers it (PostgreSQL's
    LISTEN/NOTIFY), else by sleeping one poll interval (stop-aware) before the next round.

    Why its own loop rather than a `CatchUpSubscription` or a consumer group: a projection's
    checkpoint is its registry row, which also names the live table set and the code version that
    built it. The compare-and-set that moves it (`Dialect.advance`) is what fences a batch against
    a second runner, an inline hook and a rebuild's swap; a subscription's checkpoint
    (`subscription:<name>`) knows no table sets, and a group's checkpoints are per partition, so
    neither can say "every event up to P is in set vN" (what `wait_until`, `status`'s lag,
    `reconcile` and the swap rely on). docs/PROJECTIONS.md, "Subscriptions and consumer groups".
    """

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
        poll_interval: float = 0.02,
        rebuild_stale: bool = False,
    ) -> None:
        for projection in projections:
            if projection.store is not store:
                raise ProjectionError(f"{projection!r} is bound to another store than {store!r}")
        self.store = store
        self.projections = list(projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.rebuild_stale = rebuild_stale
        self._warned: set[str] = set()
        self.last_error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One batch per projection; returns how many checkpoints moved."""
        moved = 0
        for projection in self.projections:
            before = projection.position()
            result = run_batch(projection, self.batch_size)
            if result.stale:
                moved += self._stale(projection)
                continue
            moved += result.position > before
        return moved

    def _stale(self, projection: Projection) -> bool:
        """The live set is another code version's. Rebuild it if asked to (and the code is newer)."""
        row = projection.registry_row()
        if self.rebuild_stale and row is not None and projection.version > row.code_version:
            from chronik.projections.rebuild import rebuild

            log.info("projection %s: rebuilding for code version %d", projection.name, projection.version)
            rebuild(projection, batch_size=max(self.batch_size, 1000))
            return True
        if projection.name not in self._warned:
            self._warned.add(projection.name)
            log.warning(
                "projection %s: live tables were built by code version %s, this runner has %d; "
                "not applying (rebuild it, or start the runner with rebuild_stale=True)",
                projection.name,
                None if row is None else row.code_version,
                projection.version,
            )
        return False

    def stale(self) -> list[str]:
        """Projections whose live tables this runner's code did not build (it leaves them alone)."""
        names = []
        for projection in self.projections:
            row = projection.registry_row()
            if row is not None and row.code_version != projection.version:
                names.append(projection.name)
        return names

    def run_until_caught_up(self, timeout: float = 60.0) -> None:
        """Run rounds until every projection's live set (built by this code) reaches today's head."""
        for projection in self.projections:
            projection.ensure()
        target = self.store.head_position()
        deadline = time.monotonic() + timeout
        while True:
            stale = self.stale()
            if stale and not self.rebuild_stale:
                raise ProjectionError(
                    f"projection(s) {', '.join(stale)}: the live tables were built by another code "
                    "version; rebuild them (chronik projections rebuild NAME) to catch up"
                )
            if not stale and all(projection.position() >= target for projection in self.projections):
                return
            if time.monotonic() > deadline:
                raise ProjectionError(f"projections did not reach position {target} within {timeout}s")
            self.run_once()

    def start(self) -> None:
        if self._thread is not None:
            raise ProjectionError("this runner is already running")
        for projection in self.projections:
            projection.ensure()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="chronik-projections", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.run_once():
                    continue
                self._wait()
            except Exception as error:  # keep serving; the error is logged and kept for callers
                self.last_error = error
                if isinstance(error, ProjectionError):  # it names what failed: no traceback needed
                    log.error("projection runner round failed; retrying: %s", error)
                else:
                    log.exception("projection runner round failed; retrying")
                self._stop.wait(min(1.0, self.poll_interval * 10))

    def _wait(self) -> None:
        wait_for_events: Callable[..., object] | None = getattr(self.store, "wait_for_events", None)
        if wait_for_events is not None:
            after = min(projection.position() for projection in self.projections)
            wait_for_events(after, min(0.5, self.poll_interval * 25))
        else:
            self._stop.wait(self.poll_interval)

    def __enter__(self) -> ProjectionRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
