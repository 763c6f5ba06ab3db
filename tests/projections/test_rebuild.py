"""Blue/green rebuilds, side effects not repeated, the time machine and reconciliation."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from chronik.clock import ManualClock
from chronik.events.envelope import RecordedEvent
from chronik.projections import (
    ProjectionRunner,
    ProjectionTx,
    build_as_of,
    handles,
    rebuild,
    reconcile,
)
from chronik.store import EventStore
from tests.projections.conftest import Counts, append_deposits, deposit, table_names


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
            "DO UPDATE SET events = events + 1, total = total + excluded.total",
            (event.stream, amount),
        )


def test_rebuild_swaps_in_a_new_version_while_the_old_one_keeps_serving(sqlite_store: EventStore) -> None:
    old = Counts(sqlite_store)
    old.attach_inline()
    append_deposits(sqlite_store, streams=10, per_stream=30, amount=2)
    assert old.rows()["acct-0"] == (30, 60)

    new = CountsV2(sqlite_store)
    served_during_rebuild: list[int] = []

    def progress(position: int, head: int) -> None:
        # Mid-rebuild: the live (old) set answers, and appends keep landing in it inline.
        served_during_rebuild.append(new.rows()["acct-0"][1])
        if len(served_during_rebuild) == 2:
            sqlite_store.append("acct-0", [deposit(1)])

    result = rebuild(new, batch_size=50, progress=progress)
    assert served_during_rebuild[:2] == [60, 60] and served_during_rebuild[2] == 61
    assert (result.old_version, result.new_version) == (1, 2)
    assert result.position == sqlite_store.head_position()
    # The new set has every event, including the one appended during the rebuild, in the new code's unit.
    assert new.rows()["acct-0"] == (31, 6100)
    assert new.rows()["acct-9"] == (30, 6000)
    row = new.registry_row()
    assert row is not None and (row.live_version, row.code_version, row.building_version) == (2, 2, None)
    names = table_names(sqlite_store)
    assert "counts__streams__v2" in names and "counts__streams__v1" not in names  # old set dropped


def test_inline_appends_after_the_swap_land_in_the_new_set(sqlite_store: EventStore) -> None:
    counts = CountsV2(sqlite_store)
    counts.attach_inline()
    append_deposits(sqlite_store, streams=2, per_stream=3)
    rebuild(counts, batch_size=2)
    result = sqlite_store.append("acct-0", [deposit(1)])
    assert counts.position() == result.last_position
    assert counts.rows()["acct-0"] == (4, 400)


def test_rebuild_does_not_repeat_side_effects(sqlite_store: EventStore) -> None:
    Notifying.sent.clear()
    notifying = Notifying(sqlite_store)
    notifying.ensure()  # registered before the events: they are news to it, not history
    append_deposits(sqlite_store, streams=3, per_stream=4)
    ProjectionRunner(sqlite_store, [notifying], batch_size=5).run_until_caught_up()
    assert sorted(Notifying.sent) == list(range(1, 13))  # once each, when live

    rebuild(notifying, batch_size=5)
    build_as_of(notifying, position=6)
    reconcile(notifying)
    assert sorted(Notifying.sent) == list(range(1, 13))  # no e-mail sent twice

    sqlite_store.append("acct-0", [deposit(1)])
    ProjectionRunner(sqlite_store, [notifying]).run_until_caught_up()
    assert sorted(Notifying.sent) == list(range(1, 14))  # live again after the swap


def test_a_new_projection_does_not_send_side_effects_for_history(sqlite_store: EventStore) -> None:
    Notifying.sent.clear()
    append_deposits(sqlite_store, streams=2, per_stream=3)  # positions 1..6: before the projection
    notifying = Notifying(sqlite_store)
    runner = ProjectionRunner(sqlite_store, [notifying])
    runner.run_until_caught_up()
    assert notifying.rows() == {"acct-0": (3, 3), "acct-1": (3, 3)}  # history is in the tables
    assert Notifying.sent == []  # but nobody is e-mailed about it
    sqlite_store.append("acct-0", [deposit(1)])
    runner.run_until_caught_up()
    assert Notifying.sent == [7]


def test_an_interrupted_rebuild_resumes_where_it_stopped(sqlite_store: EventStore) -> None:
    append_deposits(sqlite_store, streams=5, per_stream=20)
    counts = Counts(sqlite_store)
    counts.ensure()

    class Stop(Exception):
        pass

    def stop_after_two(position: int, head: int) -> None:
        if position >= 20:
            raise Stop

    with pytest.raises(Stop):
        rebuild(counts, batch_size=10, progress=stop_after_two)
    row = counts.registry_row()
    assert row is not None and row.building_version == 2 and row.building_position == 20
    result = rebuild(counts, batch_size=10)
    assert result.resumed and result.events_applied == 80
    assert counts.rows() == {f"acct-{i}": (20, 20) for i in range(5)}


def test_time_machine_builds_as_of_a_position_or_a_time_and_leaves_live_alone(
    sqlite_store: EventStore, clock: ManualClock
) -> None:
    counts = Counts(sqlite_store)
    counts.attach_inline()
    sqlite_store.append("acct-1", [deposit(1), deposit(2)])  # positions 1, 2
    middle = clock.advance(timedelta(days=30))
    sqlite_store.append("acct-1", [deposit(4)])  # position 3
    clock.advance(timedelta(days=30))
    sqlite_store.append("acct-2", [deposit(8)])  # position 4

    by_position = build_as_of(counts, position=1)
    assert by_position.query("SELECT stream, events, total FROM {streams}") == [("acct-1", 1, 1)]
    by_time = build_as_of(counts, at=middle)  # positions 1..3 were recorded at or before `middle`
    assert by_time.position == 3
    assert by_time.query("SELECT stream, events, total FROM {streams}") == [("acct-1", 3, 7)]
    assert counts.rows() == {"acct-1": (3, 7), "acct-2": (1, 8)}  # live untouched
    by_time.drop()
    leftovers = [name for name in table_names(sqlite_store) if "asof_2026" in name]
    assert leftovers == []


def test_reconcile_names_the_row_corrupted_by_hand(sqlite_store: EventStore) -> None:
    counts = Counts(sqlite_store)
    counts.attach_inline()
    append_deposits(sqlite_store, streams=5, per_stream=3, amount=10)
    assert reconcile(counts).ok

    raw = sqlite3.connect(sqlite_store.path)  # type: ignore[attr-defined]
    with raw:
        raw.execute("UPDATE counts__streams__v1 SET total = 999 WHERE stream = 'acct-3'")
        raw.execute("DELETE FROM counts__streams__v1 WHERE stream = 'acct-4'")
        raw.execute("INSERT INTO counts__streams__v1 VALUES ('ghost', 1, 1)")
    raw.close()

    report = reconcile(counts)
    assert not report.ok
    found = {(d.kind, d.key["stream"]) for d in report.differences}
    assert found == {("changed", "acct-3"), ("missing", "acct-4"), ("unexpected", "ghost")}
    changed = next(d for d in report.differences if d.kind == "changed")
    assert "acct-3" in changed.describe() and "999" in changed.describe() and "30" in changed.describe()
    assert not any("scratch" in name for name in table_names(sqlite_store))  # scratch set dropped
