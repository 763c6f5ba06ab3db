"""Declaring projections, inline and async modes, exactly once, read-your-writes."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from chronik import NewEvent
from chronik.clock import ManualClock
from chronik.events.envelope import RecordedEvent
from chronik.projections import (
    InvalidProjection,
    Projection,
    ProjectionError,
    ProjectionHandlerFailed,
    ProjectionRunner,
    ProjectionTimeout,
    ProjectionTx,
    UnsupportedStore,
    handles,
    rebuild,
    reconcile,
    run_batch,
)
from chronik.store import EventStore, open_store
from chronik.store.sqlite import SQLiteStore
from tests.projections.conftest import Counts, append_deposits, deposit
from tests.raw_sql import table_names

pytestmark = pytest.mark.sql_stores


def test_inline_projection_is_current_when_the_append_returns(sql_store: EventStore) -> None:
    counts = Counts(sql_store)
    counts.attach_inline()
    result = sql_store.append("acct-1", [deposit(5), deposit(7)])
    assert counts.position() == result.last_position  # committed with the append
    assert counts.rows() == {"acct-1": (2, 12)}
    assert counts.wait_until(result.last_position or 0, timeout=0) == result.last_position


def test_inline_failure_rolls_the_append_back(sql_store: EventStore) -> None:
    counts = Counts(sql_store)
    counts.attach_inline()
    with pytest.raises(ProjectionHandlerFailed, match="on event Deposited") as raised:
        sql_store.append("acct-1", [NewEvent(type="Deposited", data={"amount": "not a number"})])
    assert isinstance(raised.value.__cause__, ValueError)  # the handler's own error, chained
    assert sql_store.head_position() == 0
    assert counts.rows() == {} and counts.position() == 0


def test_inline_on_sqlite_catches_up_on_events_written_without_the_hook(tmp_path: Path) -> None:
    """SQLite only: its hook holds the one write lock, so the log below its own events is complete
    and it can apply what a writer without the hook left. On PostgreSQL every writer must attach the
    hook (docs/PROJECTIONS.md), so there is nothing to test there."""
    sql_store = open_store(f"sqlite:///{tmp_path / 'store.db'}", clock=ManualClock())
    append_deposits(sql_store, streams=3, per_stream=2)  # before attaching: caught up at attach
    counts = Counts(sql_store)
    counts.attach_inline()
    assert counts.rows() == {f"acct-{i}": (2, 2) for i in range(3)}
    other_writer = open_store(sql_store.url)  # another process's store, without the hook
    other_writer.append("acct-9", [deposit(1)])
    other_writer.close()
    result = sql_store.append("acct-1", [deposit(10)])
    assert counts.rows()["acct-9"] == (1, 1)
    assert counts.rows()["acct-1"] == (3, 12)
    assert counts.position() == result.last_position
    sql_store.close()


def test_async_runner_applies_each_event_once_and_skips_unhandled_types(sql_store: EventStore) -> None:
    append_deposits(sql_store, streams=4, per_stream=3)
    sql_store.append("other-1", [NewEvent(type="Ignored", data={})])  # advances the checkpoint only
    counts = Counts(sql_store)
    runner = ProjectionRunner(sql_store, [counts], batch_size=5)
    runner.run_until_caught_up(timeout=10)
    assert counts.position() == sql_store.head_position()
    assert counts.rows() == {f"acct-{i}": (3, 3) for i in range(4)}
    assert run_batch(counts).applied == 0  # nothing new: applying again changes nothing
    assert counts.rows() == {f"acct-{i}": (3, 3) for i in range(4)}


@pytest.mark.timeout(60)
def test_two_runners_racing_on_one_projection_apply_each_event_exactly_once(sql_store: EventStore) -> None:
    append_deposits(sql_store, streams=20, per_stream=10)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            store = open_store(sql_store.url)  # its own connections, like another process
            ProjectionRunner(store, [Counts(store)], batch_size=7).run_until_caught_up(timeout=30)
            store.close()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = Counts(sql_store).rows()
    assert sum(events for events, _ in rows.values()) == 200
    assert all(row == (10, 10) for row in rows.values())


@pytest.mark.timeout(60)
def test_inline_writers_in_parallel_apply_each_event_exactly_once(sql_store: EventStore) -> None:
    Counts(sql_store).ensure()
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            store = open_store(sql_store.url)  # each writer is its own "process" with the hook
            Counts(store).attach_inline()
            for _ in range(30):
                store.append(f"acct-{index}", [deposit(1), deposit(2)])
            store.close()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = Counts(sql_store)
    assert counts.rows() == {f"acct-{index}": (60, 90) for index in range(3)}
    assert counts.position() == sql_store.head_position()
    assert len(sql_store.read_all()) == 180


@pytest.mark.timeout(60)
def test_read_your_writes_with_a_background_runner(sql_store: EventStore) -> None:
    counts = Counts(sql_store)
    with ProjectionRunner(sql_store, [counts], poll_interval=0.005):
        for amount in range(1, 6):
            position = sql_store.append("acct-1", [deposit(amount)]).last_position
            assert position is not None
            counts.wait_until(position, timeout=10)
            events, _total = counts.rows()["acct-1"]
            assert events == amount  # the query sees the append it waited for
    assert counts.rows() == {"acct-1": (5, 15)}


def test_wait_until_times_out_naming_projection_and_positions(sql_store: EventStore) -> None:
    counts = Counts(sql_store)
    counts.ensure()
    position = append_deposits(sql_store, streams=1, per_stream=3)
    started = time.monotonic()
    with pytest.raises(ProjectionTimeout) as raised:
        counts.wait_until(position, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2.0  # gives up on time, not after a pool or lock wait
    error = raised.value
    assert (error.name, error.wanted, error.reached) == ("counts", position, 0)
    assert "'counts'" in str(error) and f"position {position}" in str(error) and "position 0" in str(error)


def test_tables_are_versioned_and_named_from_checked_identifiers(sql_store: EventStore) -> None:
    Counts(sql_store).ensure()
    assert "counts__streams__v1" in table_names(sql_store)
    assert "projections" in table_names(sql_store)


@pytest.mark.parametrize(
    "bad_name",
    ['x"; DROP TABLE events; --', "Upper", "double__underscore", "1starts_with_digit", "", "a" * 41],
)
def test_projection_names_that_could_inject_sql_are_refused(bad_name: str) -> None:
    with pytest.raises(InvalidProjection, match="invalid projection name"):

        class Bad(Projection):
            name = bad_name
            tables = ("t",)
            schema = ("CREATE TABLE {t} (x INTEGER)",)

            @handles("A")
            def on_a(self, tx: ProjectionTx, event: RecordedEvent) -> None:
                pass


def test_declaration_errors_are_found_at_class_creation() -> None:
    with pytest.raises(InvalidProjection, match="undeclared table"):

        class UsesUndeclared(Projection):
            name = "uses_undeclared"
            tables = ("t",)
            schema = ("CREATE TABLE {t} (x INTEGER)", "CREATE INDEX i ON {other} (x)")

            @handles("A")
            def on_a(self, tx: ProjectionTx, event: RecordedEvent) -> None:
                pass

    with pytest.raises(InvalidProjection, match="no @handles"):

        class NoHandlers(Projection):
            name = "no_handlers"
            tables = ("t",)
            schema = ("CREATE TABLE {t} (x INTEGER)",)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE carts (x INTEGER)",
        "CREATE INDEX carts_status ON {t} (x)",
        "CREATE UNIQUE INDEX IF NOT EXISTS fixed ON {t} (x)",
    ],
)
def test_schema_objects_with_fixed_names_are_refused(statement: str) -> None:
    """A fixed name would collide between the live set and the one a rebuild is writing."""
    with pytest.raises(InvalidProjection, match="must start with a table placeholder"):

        class Fixed(Projection):
            name = "fixed_names"
            tables = ("t",)
            schema = ("CREATE TABLE IF NOT EXISTS {t} (x INTEGER)", statement)

            @handles("A")
            def on_a(self, tx: ProjectionTx, event: RecordedEvent) -> None:
                pass


def test_projections_need_a_sql_store() -> None:
    with pytest.raises(UnsupportedStore, match="no SQL"):
        Counts(open_store("memory://"))


class WaitingStore(SQLiteStore):
    """A store whose `wait_for_events(after, timeout)` is recorded (PostgreSQL overrides it too)."""

    calls: list[tuple[int, float]]

    def wait_for_events(self, after: int, timeout: float) -> bool:
        self.calls.append((after, timeout))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.head_position() > after:
                return True
            time.sleep(0.001)
        return False


@pytest.mark.timeout(60)
def test_the_runner_waits_through_wait_for_events_when_the_store_has_it(tmp_path: Path) -> None:
    """On SQLite only: the store that lacks `wait_for_events` gets it from a subclass here."""
    store = WaitingStore(str(tmp_path / "waiting.db"))
    store.calls = []
    counts = Counts(store)
    with ProjectionRunner(store, [counts], poll_interval=0.01):
        while not store.calls:  # the idle runner is waiting on the store, not sleeping
            time.sleep(0.001)
        position = store.append("acct-1", [deposit(3)]).last_position
        assert position is not None
        counts.wait_until(position, timeout=10)
    assert counts.rows() == {"acct-1": (1, 3)}
    store.close()
    assert store.calls and all(timeout > 0 for _, timeout in store.calls)


class UpdateElseInsert(Projection):
    """The classic handler that relies on `rowcount`: update the row, insert it if there was none."""

    name = "update_else_insert"
    tables = ("streams",)
    schema = ("CREATE TABLE {streams} (stream TEXT PRIMARY KEY, events INTEGER NOT NULL)",)

    @handles("Deposited")
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        updated = tx.execute("UPDATE {streams} SET events = events + 1 WHERE stream = ?", (event.stream,))
        if updated.rowcount == 0:
            tx.execute("INSERT INTO {streams} VALUES (?, 1)", (event.stream,))


class LateRowcount(UpdateElseInsert):
    """Asks for a write's rowcount only after issuing the next statement."""

    name = "late_rowcount"

    @handles("Deposited")
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        inserted = tx.execute("INSERT INTO {streams} VALUES (?, 1) ON CONFLICT DO NOTHING", (event.stream,))
        tx.execute("UPDATE {streams} SET events = events + 1 WHERE stream = 'nobody'")
        assert inserted.rowcount in (0, 1)


def test_handlers_see_rowcounts_and_their_own_writes_within_a_batch(sql_store: EventStore) -> None:
    """On PostgreSQL a batch's writes are pipelined and grouped; a handler must see the same as unbatched."""
    append_deposits(sql_store, streams=3, per_stream=40)
    projection = UpdateElseInsert(sql_store)
    rebuild(projection, batch_size=100)  # 120 events: several batches, many writes per batch
    assert projection.query("SELECT stream, events FROM {streams} ORDER BY stream") == [
        (f"acct-{index}", 40) for index in range(3)
    ]
    ProjectionRunner(sql_store, [projection], batch_size=7).run_until_caught_up()
    append_deposits(sql_store, streams=4, per_stream=5)
    ProjectionRunner(sql_store, [projection], batch_size=7).run_until_caught_up()
    rows = dict(projection.query("SELECT stream, events FROM {streams}"))
    assert rows == {"acct-0": 45, "acct-1": 45, "acct-2": 45, "acct-3": 5}
    assert reconcile(projection).ok


def test_a_late_rowcount_is_a_clear_error_where_writes_are_batched(
    sql_store: EventStore, backend: str
) -> None:
    append_deposits(sql_store, streams=2, per_stream=3)
    projection = LateRowcount(sql_store)
    if backend == "sqlite":  # every statement runs at once: its rowcount stays readable
        ProjectionRunner(sql_store, [projection]).run_until_caught_up()
        assert projection.query("SELECT count(*) FROM {streams}") == [(2,)]
        return
    with pytest.raises(ProjectionError, match="read a write's rowcount before the next statement"):
        run_batch(projection)
    assert projection.position() == 0  # the batch rolled back: nothing half-applied


class Amounts(Projection):
    """One row per deposit; the amount column refuses NULL (a server-side failure)."""

    name = "amounts"
    tables = ("deposits",)
    schema = ("CREATE TABLE {deposits} (position BIGINT PRIMARY KEY, amount INTEGER NOT NULL)",)

    @handles("Deposited")
    def deposited(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        tx.execute("INSERT INTO {deposits} VALUES (?, ?)", (event.global_position, event.data.get("amount")))


def test_a_failing_statement_in_a_batch_rolls_the_whole_batch_back(sql_store: EventStore) -> None:
    """On PostgreSQL the batch's writes are pipelined, so the failure is reported at the batch's end:
    the append still fails, and the good write before the bad one is not kept either."""
    amounts = Amounts(sql_store)
    amounts.attach_inline()
    sql_store.append("acct-1", [deposit(1)])
    before = sql_store.head_position()
    with pytest.raises(Exception, match=r"(?i)not.null"):
        sql_store.append("acct-1", [deposit(2), NewEvent(type="Deposited", data={"amount": None})])
    assert sql_store.head_position() == before
    assert amounts.query("SELECT amount FROM {deposits}") == [(1,)]


def test_a_failing_handler_names_its_event_even_where_the_batch_is_sent_as_a_whole(
    sql_store: EventStore,
) -> None:
    """PostgreSQL reports a pipelined batch's failure at its end; the event is found by running the
    batch again one statement at a time (after going back to the batch's savepoint)."""
    amounts = Amounts(sql_store)
    amounts.ensure()
    sql_store.append("acct-1", [deposit(1), deposit(2)])
    bad = sql_store.append("acct-2", [NewEvent(type="Deposited", data={"amount": None})]).last_position
    sql_store.append("acct-3", [deposit(3)])
    with pytest.raises(ProjectionHandlerFailed) as raised:
        run_batch(amounts)
    failure = raised.value
    assert failure.event is not None and failure.event.global_position == bad
    assert f"on event Deposited (stream 'acct-2', version 0, global position {bad})" in str(failure)
    assert re.search(r"(?i)not.null", str(failure)) and failure.__cause__ is failure.error
    assert "\n" not in str(failure)  # one line, whatever the database's message looked like
    assert "the batch was rolled back: the live tables stay at position 0" in str(failure)
    assert amounts.position() == 0 and amounts.query("SELECT count(*) FROM {deposits}") == [(0,)]
