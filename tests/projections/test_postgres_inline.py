"""Projections on PostgreSQL: inline hooks under concurrent writers, out-of-order positions, rebuilds.

On PostgreSQL positions are assigned before commit, so two inline appends can reach a projection
out of position order; the hook locks the registry row and applies exactly its own events (see
`chronik/projections/postgres.py`). These tests use real threads, each with its own store object
(its own pool of server connections), like separate processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chronik.errors import StoreUnavailable
from chronik.events.envelope import RecordedEvent
from chronik.projections import (
    ProjectionHandlerFailed,
    ProjectionRunner,
    ProjectionTx,
    handles,
    rebuild,
    reconcile,
    run_batch,
)
from chronik.store import EventStore, open_store
from tests.postgres_support import postgres_factory
from tests.projections.conftest import Counts, deposit

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EventStore]:
    store = postgres_factory(tmp_path, request)()
    yield store
    store.close()


def _run_writers(
    url: str, writers: int, appends: int, inline: bool = True, positions: list[int] | None = None
) -> list[BaseException]:
    """Threads appending through their own store objects; `positions` collects the last positions."""
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            with open_store(url) as store:
                if inline:
                    Counts(store).attach_inline()
                for number in range(appends):
                    # Half the appends go to a stream shared by all writers (they take turns on it).
                    stream = "acct-shared" if number % 2 else f"acct-{index}"
                    result = store.append(stream, [deposit(1), deposit(2)])
                    if positions is not None and result.last_position is not None:
                        positions.append(result.last_position)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.timeout(120)
def test_inline_writers_in_parallel_apply_each_event_exactly_once(pg_store: EventStore) -> None:
    Counts(pg_store).ensure()
    positions: list[int] = []
    assert _run_writers(pg_store.url, writers=4, appends=30, positions=positions) == []
    counts = Counts(pg_store)
    expected = {f"acct-{index}": (30, 45) for index in range(4)} | {"acct-shared": (120, 180)}
    assert counts.rows() == expected
    assert counts.position() == max(positions)
    assert reconcile(counts).ok


def test_an_earlier_position_that_commits_later_is_still_applied(pg_store: EventStore) -> None:
    """T1 takes its place in the order first, T2 appends and commits first: T1's events, below the
    checkpoint T2 left, must still be applied (the hook must not skip them as 'already applied')."""
    counts = Counts(pg_store)
    counts.attach_inline()
    other = open_store(pg_store.url)
    try:
        Counts(other).attach_inline()
        with pg_store.transaction() as uow:
            assert uow.connection is not None  # type: ignore[attr-defined]  # fixes T1's position now
            later = other.append("acct-2", [deposit(5)])  # T2: a higher position, committed first
            assert counts.position() == later.last_position
            earlier = uow.append("acct-1", [deposit(7)])
        assert earlier.last_position is not None and later.last_position is not None
        assert earlier.last_position < later.last_position
        assert counts.rows() == {"acct-1": (1, 7), "acct-2": (1, 5)}
        assert counts.position() == later.last_position  # never moved back
        assert reconcile(counts).ok
    finally:
        other.close()


@pytest.mark.timeout(120)
def test_rebuild_while_inline_writers_append_misses_nothing(pg_store: EventStore) -> None:
    counts = Counts(pg_store)
    counts.attach_inline()
    for index in range(20):
        pg_store.append(f"acct-{index}", [deposit(1)])
    done = threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        errors.extend(_run_writers(pg_store.url, writers=2, appends=40))
        done.set()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        result = rebuild(counts, batch_size=7)
    finally:
        thread.join()
    assert errors == [] and done.is_set()
    assert result.new_version == 2
    rows = counts.rows()
    assert sum(events for events, _ in rows.values()) == 20 + 2 * 40 * 2
    assert rows["acct-shared"] == (80, 120)
    assert reconcile(counts).ok


@pytest.mark.timeout(120)
def test_async_runner_with_concurrent_writers_applies_each_event_once(pg_store: EventStore) -> None:
    counts = Counts(pg_store)
    with ProjectionRunner(pg_store, [counts], poll_interval=0.005) as runner:
        positions: list[int] = []
        assert _run_writers(pg_store.url, writers=3, appends=20, inline=False, positions=positions) == []
        counts.wait_until(max(positions), timeout=30)  # read-your-writes for the last append
    assert runner.last_error is None
    rows = counts.rows()
    assert rows == {f"acct-{index}": (20, 30) for index in range(3)} | {"acct-shared": (60, 90)}
    assert reconcile(counts).ok


class KillsItsConnection(Counts):
    """Counts, but the handler of one event has the server end its own connection mid-batch."""

    name = "killer"
    victim: tuple[str, int] = ("acct-1", 2)
    killed = False

    @handles("Deposited", "Noted")
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        super().count(tx, event)
        if (event.stream, event.stream_version) == self.victim and not KillsItsConnection.killed:
            KillsItsConnection.killed = True
            backend = tx.query("SELECT pg_backend_pid()")[0][0]
            with psycopg.connect(self.store.conninfo, autocommit=True) as other:  # type: ignore[attr-defined]
                other.execute("SELECT pg_terminate_backend(%s)", (backend,))
            tx.query("SELECT 1")


def test_a_lost_connection_in_a_batch_is_the_stores_trouble_not_the_handlers(pg_store: EventStore) -> None:
    """Review finding: a connection lost under a handler was reported as `ProjectionHandlerFailed`
    ("until the handler or the data is fixed"), hiding the retryable `StoreUnavailable`."""
    for index in range(3):
        pg_store.append(f"acct-{index}", [deposit(1) for _ in range(5)])
    projection = KillsItsConnection(pg_store)
    with pytest.raises(StoreUnavailable) as lost:
        run_batch(projection)
    assert not isinstance(lost.value, ProjectionHandlerFailed) and lost.value.retryable
    assert projection.position() == 0 and projection.rows() == {}  # the batch rolled back whole
    assert run_batch(projection).applied == 15  # and simply runs again
    assert projection.rows() == {f"acct-{i}": (5, 5) for i in range(3)}


class CountsRowsTouched(Counts):
    """Records what `executemany(...).rowcount` said for each event."""

    name = "touched"
    tables = ("streams", "touched")
    schema = (
        *Counts.schema,
        "CREATE TABLE {touched} (position BIGINT PRIMARY KEY, rowcount INTEGER NOT NULL)",
    )

    @handles("Deposited", "Noted")
    def count(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        super().count(tx, event)
        many = tx.executemany(
            "UPDATE {streams} SET events = events WHERE stream = ?",
            [(event.stream,), ("nobody",), (event.stream,)],
        )
        tx.execute("INSERT INTO {touched} VALUES (?, ?)", (event.global_position, many.rowcount))


def test_executemany_reports_its_rowcount_inside_a_pipelined_batch(pg_store: EventStore) -> None:
    """Review finding: inside a batch sent in pipeline mode, `executemany(...).rowcount` was -1."""
    for index in range(2):
        pg_store.append(f"acct-{index}", [deposit(1) for _ in range(3)])
    projection = CountsRowsTouched(pg_store)
    assert run_batch(projection).applied == 6
    assert [row[0] for row in projection.query("SELECT rowcount FROM {touched} ORDER BY position")] == [2] * 6
