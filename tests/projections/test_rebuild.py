"""Blue/green rebuilds, side effects not repeated, the time machine and reconciliation."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from chronik import NewEvent
from chronik.audit import verify
from chronik.clock import ManualClock
from chronik.events.envelope import RecordedEvent
from chronik.projections import (
    ProjectionError,
    ProjectionRunner,
    ProjectionTx,
    build_as_of,
    handles,
    rebuild,
    reconcile,
    run_batch,
)
from chronik.store import EventStore, open_store
from tests.projections.conftest import Counts, append_deposits, deposit
from tests.raw_sql import execute_behind_the_store, log_positions, table_names

pytestmark = pytest.mark.sql_stores


def _notify(projection: Any, event: RecordedEvent) -> None:
    projection.sent.append(event.global_position)


class Notifying(Counts):
    """Counts, plus an e-mail per deposit: a side effect that must not be repeated on replay."""

    name = "notifying"
    sent: ClassVar[list[int]] = []

    @handles("Deposited", side_effect=_notify)
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        super().count(tx, event)


class CountsV2(Counts):
    """The changed code: totals in cents now. Same name, version 2."""

    version = 2
    name = "counts"

    @handles("Deposited", "Noted")
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        amount = 100 * int(event.data.get("amount", 0)) if event.type == "Deposited" else 0
        tx.execute(
            "INSERT INTO {streams} (stream, events, total) VALUES (?, 1, ?) ON CONFLICT (stream) "
            "DO UPDATE SET events = {streams}.events + 1, total = {streams}.total + excluded.total",
            (event.stream, amount),
        )


def test_rebuild_swaps_in_a_new_version_while_the_old_one_keeps_serving(sql_store: EventStore) -> None:
    old = Counts(sql_store)
    old.attach_inline()
    append_deposits(sql_store, streams=10, per_stream=30, amount=2)
    assert old.rows()["acct-0"] == (30, 60)

    new = CountsV2(sql_store)
    served_during_rebuild: list[int] = []

    def progress(position: int, head: int) -> None:
        # Mid-rebuild: the live (old) set answers, and appends keep landing in it inline.
        served_during_rebuild.append(new.rows()["acct-0"][1])
        if len(served_during_rebuild) == 2:
            sql_store.append("acct-0", [deposit(1)])

    result = rebuild(new, batch_size=50, progress=progress)
    assert served_during_rebuild[:2] == [60, 60] and served_during_rebuild[2] == 61
    assert (result.old_version, result.new_version) == (1, 2)
    assert result.position == sql_store.head_position()
    # The new set has every event, including the one appended during the rebuild, in the new code's unit.
    assert new.rows()["acct-0"] == (31, 6100)
    assert new.rows()["acct-9"] == (30, 6000)
    row = new.registry_row()
    assert row is not None and (row.live_version, row.code_version, row.building_version) == (2, 2, None)
    names = table_names(sql_store)
    assert "counts__streams__v2" in names and "counts__streams__v1" not in names  # old set dropped


def test_inline_appends_after_the_swap_land_in_the_new_set(sql_store: EventStore) -> None:
    counts = CountsV2(sql_store)
    counts.attach_inline()
    append_deposits(sql_store, streams=2, per_stream=3)
    rebuild(counts, batch_size=2)
    result = sql_store.append("acct-0", [deposit(1)])
    assert counts.position() == result.last_position
    assert counts.rows()["acct-0"] == (4, 400)


def test_rebuild_does_not_repeat_side_effects(sql_store: EventStore) -> None:
    Notifying.sent.clear()
    notifying = Notifying(sql_store)
    notifying.ensure()  # registered before the events: they are news to it, not history
    append_deposits(sql_store, streams=3, per_stream=4)
    ProjectionRunner(sql_store, [notifying], batch_size=5).run_until_caught_up()
    positions = log_positions(sql_store)
    assert len(positions) == 12 and sorted(Notifying.sent) == positions  # once each, when live

    rebuild(notifying, batch_size=5)
    assert build_as_of(notifying, position=positions[5]).query("SELECT sum(events) FROM {streams}") == [(6,)]
    assert reconcile(notifying).ok
    assert sorted(Notifying.sent) == positions  # no e-mail sent twice

    later = sql_store.append("acct-0", [deposit(1)]).last_position
    ProjectionRunner(sql_store, [notifying]).run_until_caught_up()
    assert sorted(Notifying.sent) == [*positions, later]  # live again after the swap


def test_a_new_projection_does_not_send_side_effects_for_history(sql_store: EventStore) -> None:
    Notifying.sent.clear()
    append_deposits(sql_store, streams=2, per_stream=3)  # positions 1..6: before the projection
    notifying = Notifying(sql_store)
    runner = ProjectionRunner(sql_store, [notifying])
    runner.run_until_caught_up()
    assert notifying.rows() == {"acct-0": (3, 3), "acct-1": (3, 3)}  # history is in the tables
    assert Notifying.sent == []  # but nobody is e-mailed about it
    news = sql_store.append("acct-0", [deposit(1)]).last_position
    runner.run_until_caught_up()
    assert Notifying.sent == [news]


def test_an_interrupted_rebuild_resumes_where_it_stopped(sql_store: EventStore) -> None:
    append_deposits(sql_store, streams=5, per_stream=20)
    counts = Counts(sql_store)
    counts.ensure()

    class Stop(Exception):
        pass

    def stop_after_two(done: int, total: int) -> None:
        assert total == 100  # events, not positions (PostgreSQL's are sparse)
        if done >= 20:
            raise Stop

    with pytest.raises(Stop):
        rebuild(counts, batch_size=10, progress=stop_after_two)
    row = counts.registry_row()
    assert row is not None and row.building_version == 2
    assert row.building_position == log_positions(sql_store)[19]
    result = rebuild(counts, batch_size=10)
    assert result.resumed and result.events_applied == 80
    assert counts.rows() == {f"acct-{i}": (20, 20) for i in range(5)}


def test_time_machine_builds_as_of_a_position_or_a_time_and_leaves_live_alone(
    sql_store: EventStore, clock: ManualClock
) -> None:
    counts = Counts(sql_store)
    counts.attach_inline()
    first, _ = sql_store.append("acct-1", [deposit(1), deposit(2)]).global_positions
    middle = clock.advance(timedelta(days=30))
    third = sql_store.append("acct-1", [deposit(4)]).last_position
    clock.advance(timedelta(days=30))
    sql_store.append("acct-2", [deposit(8)])

    by_position = build_as_of(counts, position=first)
    assert by_position.query("SELECT stream, events, total FROM {streams}") == [("acct-1", 1, 1)]
    reported: list[tuple[int, int]] = []
    by_time = build_as_of(counts, at=middle, progress=lambda done, total: reported.append((done, total)))
    assert by_time.position == third  # the first three events were recorded by `middle`
    assert reported[0] == (0, 3) and reported[-1] == (3, 3)  # the total counts only those
    assert by_time.query("SELECT stream, events, total FROM {streams}") == [("acct-1", 3, 7)]
    assert counts.rows() == {"acct-1": (3, 7), "acct-2": (1, 8)}  # live untouched
    by_time.drop()
    leftovers = [name for name in table_names(sql_store) if "asof_2026" in name]
    assert leftovers == []


def test_reconcile_names_the_row_corrupted_by_hand(sql_store: EventStore) -> None:
    counts = Counts(sql_store)
    counts.attach_inline()
    append_deposits(sql_store, streams=5, per_stream=3, amount=10)
    assert reconcile(counts).ok

    for statement in (
        "UPDATE counts__streams__v1 SET total = 999 WHERE stream = 'acct-3'",
        "DELETE FROM counts__streams__v1 WHERE stream = 'acct-4'",
        "INSERT INTO counts__streams__v1 VALUES ('ghost', 1, 1)",
    ):
        assert execute_behind_the_store(sql_store, statement) == 1

    report = reconcile(counts)
    assert not report.ok
    found = {(d.kind, d.key["stream"]) for d in report.differences}
    assert found == {("changed", "acct-3"), ("missing", "acct-4"), ("unexpected", "ghost")}
    changed = next(d for d in report.differences if d.kind == "changed")
    assert "acct-3" in changed.describe() and "999" in changed.describe() and "30" in changed.describe()
    assert not any("scratch" in name for name in table_names(sql_store))  # scratch set dropped


def wait_for_lock_waiters(store: EventStore, table: str, waiters: int) -> None:
    """PostgreSQL: until `waiters` transactions wait for a lock on `table` of the store's schema."""
    statement = (
        "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE NOT l.granted AND c.relname = ? AND c.relnamespace = current_schema()::regnamespace"
    )
    deadline = time.monotonic() + 30
    while execute_behind_the_store(store, statement, (table,)) < waiters:
        assert time.monotonic() < deadline, f"nobody waits for {table}"
        time.sleep(0.01)


@pytest.mark.timeout(60)
def test_a_query_in_flight_during_the_swap_still_reads_the_old_set(
    sql_store: EventStore, backend: str
) -> None:
    """A query's snapshot keeps the old set readable; a query that starts during the swap gets the new set.

    SQLite (WAL): the swap commits and drops v1 while reader A is inside; A's snapshot still has v1.
    PostgreSQL: the drop waits for A to finish (A holds v1), and reader B, starting meanwhile, sees
    v1 still live in the registry, then waits behind the drop: it must answer from v2, not fail
    on a table that no longer exists.
    """
    counts = Counts(sql_store)
    counts.attach_inline()
    append_deposits(sql_store, streams=3, per_stream=2, amount=5)
    reader_store = open_store(sql_store.url)  # a reader with its own connections, as in another process
    reader = Counts(reader_store)
    swapped = threading.Event()
    errors: list[BaseException] = []
    late_answer: list[dict[str, tuple[int, int]]] = []

    def swap() -> None:
        rebuild_store = open_store(sql_store.url)
        try:
            rebuild(CountsV2(rebuild_store), batch_size=2)
            swapped.set()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            rebuild_store.close()

    def late_query() -> None:
        try:
            late_answer.append(Counts(reader_store).rows())
        except BaseException as error:  # reported below
            errors.append(error)

    rebuilder, late_reader = threading.Thread(target=swap), threading.Thread(target=late_query)
    with reader.dialect.read_snapshot(reader_store) as connection:
        row = reader.dialect.registry_row(connection, "counts")
        assert row is not None and row.live_version == 1
        tx = reader.tx(connection, "v1")
        assert tx.query("SELECT sum(total) FROM {streams}") == [(30,)]
        rebuilder.start()
        if backend == "sqlite":
            assert swapped.wait(10)  # the swap commits and drops v1 while A is inside
            late_reader.start()
        else:
            wait_for_lock_waiters(sql_store, "counts__streams__v1", 1)  # the drop waits for A
            assert not swapped.is_set()
            late_reader.start()
            wait_for_lock_waiters(sql_store, "counts__streams__v1", 2)  # B found v1 live, waits too
        assert tx.query("SELECT sum(total) FROM {streams}") == [(30,)]  # A's snapshot still has v1
    rebuilder.join(30)
    late_reader.join(30)
    assert errors == []
    assert late_answer == [{f"acct-{i}": (2, 1000) for i in range(3)}]  # B: the new set
    assert reader.rows()["acct-0"] == (2, 1000)  # the next query sees v2
    reader_store.close()


@pytest.mark.timeout(60)
def test_rebuild_while_a_background_runner_and_writers_are_busy(sql_store: EventStore) -> None:
    counts = Counts(sql_store)
    append_deposits(sql_store, streams=5, per_stream=20)
    stop, writing = threading.Event(), threading.Event()

    def write() -> None:
        writer = open_store(sql_store.url)
        for count in itertools.count(1):
            if stop.is_set():
                break
            writer.append("acct-w", [deposit(1)])
            if count == 5:
                writing.set()
            time.sleep(0.002)  # a busy writer, not a tight loop: SQLite's lock is not fair to waiters
        writer.close()

    with ProjectionRunner(sql_store, [counts], batch_size=7, poll_interval=0.001) as runner:
        writer_thread = threading.Thread(target=write)
        writer_thread.start()
        try:
            assert writing.wait(10)
            rebuild_store = open_store(sql_store.url)
            # Pause between batches so appends and runner rounds interleave with the rebuild.
            result = rebuild(CountsV2(rebuild_store), batch_size=9, progress=lambda p, h: time.sleep(0.005))
            rebuild_store.close()
        finally:
            stop.set()
            writer_thread.join()
        assert runner.last_error is None
    assert result.new_version == 2
    # After the swap the old code's runner leaves the new set alone; the new code keeps it.
    assert run_batch(counts).stale
    new = CountsV2(sql_store)
    ProjectionRunner(sql_store, [new]).run_until_caught_up()
    final = sql_store.head_position()
    assert new.position() == final
    written = len(log_positions(sql_store)) - 100
    assert written >= 5
    rows = new.rows()
    assert rows["acct-w"][0] == written  # every event exactly once, across the swap
    assert rows["acct-0"] == (20, 2000)  # the new code's unit: built by v2
    assert reconcile(CountsV2(sql_store)).ok


def test_a_runner_can_rebuild_a_projection_whose_code_changed(sql_store: EventStore) -> None:
    append_deposits(sql_store, streams=2, per_stream=3)
    ProjectionRunner(sql_store, [Counts(sql_store)]).run_until_caught_up()
    new = CountsV2(sql_store)
    with pytest.raises(ProjectionError, match="built by another code version"):
        ProjectionRunner(sql_store, [new]).run_until_caught_up(timeout=5)
    ProjectionRunner(sql_store, [new], rebuild_stale=True).run_until_caught_up(timeout=5)
    row = new.registry_row()
    assert row is not None and (row.live_version, row.code_version) == (2, 2)
    assert new.rows() == {"acct-0": (3, 300), "acct-1": (3, 300)}


def test_old_inline_code_leaves_the_new_set_to_the_new_code(sql_store: EventStore) -> None:
    old = Counts(sql_store)
    old.attach_inline()
    append_deposits(sql_store, streams=1, per_stream=2)
    new = CountsV2(sql_store)
    rebuild(new)
    built_at = sql_store.head_position()
    sql_store.append("acct-0", [deposit(1)])  # the old hook does not write v2 with v1 code
    assert new.rows() == {"acct-0": (2, 200)} and new.position() == built_at
    new.attach_inline()  # the new code catches up on what the old one left, from the log
    last = sql_store.append("acct-0", [deposit(1)]).last_position
    assert new.rows() == {"acct-0": (4, 400)} and new.position() == last


def test_reconcile_refuses_to_compare_tables_built_by_other_code(sql_store: EventStore) -> None:
    append_deposits(sql_store, streams=1, per_stream=2)
    ProjectionRunner(sql_store, [Counts(sql_store)]).run_until_caught_up()
    with pytest.raises(ProjectionError, match="built by code version 1, and this is version 2"):
        reconcile(CountsV2(sql_store))


def test_progress_counts_events_so_rate_and_eta_hold_on_sparse_positions(sql_store: EventStore) -> None:
    """Rebuild, time machine and verify report (events done, events total), never log positions."""
    append_deposits(sql_store, streams=3, per_stream=7)  # 21 events the projection handles, 4 it does not:
    sql_store.append("other-1", [NewEvent(type="Ignored", data={}) for _ in range(4)])
    counts = Counts(sql_store)
    counts.ensure()

    def recorder() -> tuple[list[tuple[int, int]], Callable[[int, int], None]]:
        calls: list[tuple[int, int]] = []
        return calls, lambda done, total: calls.append((done, total))

    rebuilt, report = recorder()
    rebuild(counts, batch_size=2, progress=report)
    assert rebuilt[0] == (0, 21) and rebuilt[-1] == (21, 21)
    assert all(total == 21 and 0 <= done <= 21 for done, total in rebuilt)
    assert [done for done, _ in rebuilt] == sorted(done for done, _ in rebuilt)

    as_of, report = recorder()
    build_as_of(counts, position=log_positions(sql_store)[9], batch_size=4, progress=report)
    assert as_of[0] == (0, 10) and as_of[-1] == (10, 10)

    verified, report = recorder()
    assert verify(sql_store, seal_after=False, progress=report).ok
    assert verified[0] == (0, 25) and verified[-1] == (25, 25)
