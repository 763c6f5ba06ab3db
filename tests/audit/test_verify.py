"""Tamper evidence: rows are edited, deleted and reordered with a raw sqlite3 connection, and
`verify` must name the place."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from chronik import NewEvent
from chronik.audit import TamperDetected, seal, verify
from chronik.audit.seals import Break
from chronik.clock import ManualClock
from chronik.store import EventStore, open_store


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[EventStore]:
    """Three streams, interleaved in the global order: acct-a is at positions 1, 4, 7, 10, ..."""
    store = open_store(f"sqlite:///{tmp_path / 'audit.db'}", clock=clock)
    for round_ in range(4):
        for stream in ("acct-a", "acct-b", "acct-c"):
            clock.advance(timedelta(seconds=1))
            store.append(stream, [NewEvent(type="Deposited", data={"amount": round_ + 1})])
    yield store
    store.close()


def raw(store: EventStore) -> sqlite3.Connection:
    connection = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    connection.isolation_level = None
    return connection


def first(store: EventStore) -> Break:
    report = verify(store, seal_after=False)
    assert not report.ok, "verify found nothing"
    found = report.first_break
    assert found is not None
    return found


def test_an_untouched_log_verifies_and_gets_sealed(store: EventStore) -> None:
    report = verify(store, max_events=5)
    assert report.ok and report.events == 12 and report.streams == 3
    assert (report.seals_verified, report.seals_added) == (0, 3)  # 5 + 5 + 2 events
    assert report.last_seal is not None and report.last_seal.to_position == 12
    store.append("acct-a", [NewEvent(type="Deposited", data={"amount": 9})])
    again = verify(store, max_events=5)
    assert again.ok and (again.seals_verified, again.seals_added) == (3, 1)


def test_an_edited_event_is_named_by_stream_version_and_position(store: EventStore) -> None:
    seal(store)
    with raw(store) as connection:
        connection.execute("UPDATE events SET data = '{\"amount\":1000}' WHERE global_position = 5")
    found = first(store)
    assert (found.kind, found.stream, found.stream_version, found.position) == ("edited", "acct-b", 1, 5)
    assert "stream 'acct-b'" in found.describe() and "position 5" in found.describe()


def test_an_edit_before_any_seal_is_found_by_the_chain(store: EventStore) -> None:
    with raw(store) as connection:
        connection.execute("UPDATE events SET metadata = '{}' WHERE global_position = 3")
    found = first(store)
    assert (found.kind, found.stream, found.position) == ("edited", "acct-c", 3)
    with pytest.raises(TamperDetected, match="position 3"):
        seal(store)  # a broken range is never sealed


def test_an_edit_with_a_rewritten_hash_is_caught_by_the_next_event_or_the_seal(store: EventStore) -> None:
    seal(store, max_events=3)
    from chronik.events.chain import event_hash

    with raw(store) as connection:
        # Forge acct-c's last event (position 12) and recompute its hash: its chain alone is fine.
        row = connection.execute(
            "SELECT event_id, stream_name, stream_version, event_type, schema_version, recorded_at, "
            "occurred_at, metadata, event_hash FROM events WHERE global_position = 12"
        ).fetchone()
        previous = connection.execute(
            "SELECT event_hash FROM events WHERE stream_name = 'acct-c' AND stream_version = 2"
        ).fetchone()[0]
        forged = '{"amount":1000000}'
        new_hash = event_hash(previous, *row[:8], forged)
        connection.execute(
            "UPDATE events SET data = ?, event_hash = ? WHERE global_position = 12", (forged, new_hash)
        )
    found = first(store)
    assert (found.kind, found.seal_no, found.position) == ("seal", 4, 10)  # seal #4 covers 10..12
    assert "positions 10..12" in found.detail


def test_a_deleted_event_in_the_middle_of_a_stream_is_named(store: EventStore) -> None:
    with raw(store) as connection:
        connection.execute("DELETE FROM events WHERE global_position = 4")  # acct-a version 1
    found = first(store)
    assert (found.kind, found.stream, found.stream_version, found.position) == ("missing", "acct-a", 2, 7)


def test_a_deleted_last_event_of_a_stream_breaks_its_seal(store: EventStore) -> None:
    seal(store, max_events=6)
    with raw(store) as connection:
        connection.execute("DELETE FROM events WHERE global_position = 11")  # acct-b's last event
    found = first(store)
    assert (found.kind, found.seal_no) == ("seal", 2)
    assert "positions 7..12" in found.detail and "5 events now, 6 when sealed" in found.detail


def test_deleted_events_at_the_end_of_the_log_are_reported(store: EventStore) -> None:
    seal(store)
    with raw(store) as connection:
        connection.execute("DELETE FROM events WHERE global_position >= 11")
    kinds = {b.kind for b in verify(store, seal_after=False).breaks}
    assert "truncated" in kinds and "seal" in kinds


def _swap(connection: sqlite3.Connection, a: int, b: int) -> None:
    connection.execute("UPDATE events SET global_position = -1 WHERE global_position = ?", (a,))
    connection.execute("UPDATE events SET global_position = ? WHERE global_position = ?", (a, b))
    connection.execute("UPDATE events SET global_position = ? WHERE global_position = -1", (b,))


def test_events_of_different_streams_swapped_in_the_global_order_are_found(store: EventStore) -> None:
    seal(store, max_events=4)
    with raw(store) as connection:
        _swap(connection, 5, 6)  # acct-b v1 <-> acct-c v1: each stream's own order is intact
    report = verify(store, seal_after=False)
    found = report.first_break
    assert found is not None and (found.kind, found.position) == ("reordered", 6)  # its time goes back
    assert any(b.kind == "seal" and b.seal_no == 2 and b.position == 5 for b in report.breaks)


def test_a_swap_with_equal_times_is_still_caught_by_the_seal(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'still.db'}", clock=ManualClock())  # time stands still
    for stream in ("x-1", "y-1", "x-1", "y-1"):
        store.append(stream, [NewEvent(type="Noted", data={})])
    seal(store)
    with raw(store) as connection:
        _swap(connection, 2, 3)  # y-1 v0 <-> x-1 v1
    found = first(store)
    assert (found.kind, found.seal_no) == ("seal", 1)
    store.close()


def test_events_of_one_stream_swapped_are_named(store: EventStore) -> None:
    with raw(store) as connection:
        _swap(connection, 1, 4)  # acct-a v0 <-> v1
    found = first(store)
    assert (found.stream, found.position) == ("acct-a", 1)


def test_an_altered_seal_table_is_reported(store: EventStore) -> None:
    seal(store, max_events=4)
    with raw(store) as connection:
        connection.execute("UPDATE seals SET seal_hash = 'x' WHERE seal_no = 1")
    kinds = {(b.kind, b.seal_no) for b in verify(store, seal_after=False).breaks}
    assert ("seals", 2) in kinds and ("seal", 1) in kinds
