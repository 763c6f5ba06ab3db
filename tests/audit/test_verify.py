"""Tamper evidence on both SQL stores: rows are edited, deleted and reordered behind the store's back
(a raw sqlite3 connection, or a raw psycopg connection in the store's schema), and `verify` must
name the place. Positions are read from the log: on PostgreSQL they are sparse, not 1, 2, 3, ..."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chronik import NewEvent
from chronik.audit import Break, TamperDetected, seal, verify
from chronik.clock import ManualClock
from chronik.events.chain import event_hash
from chronik.projections import dialect_for
from chronik.store import EventStore
from tests.conftest import StoreFactory
from tests.raw_sql import log_positions, swap_positions, tamper

pytestmark = pytest.mark.sql_stores


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(store_factory: StoreFactory, clock: ManualClock) -> EventStore:
    """Three streams, interleaved in the global order: acct-a is the 1st, 4th, 7th, 10th event ..."""
    store = store_factory(clock=clock)
    for round_ in range(4):
        for stream in ("acct-a", "acct-b", "acct-c"):
            clock.advance(timedelta(seconds=1))
            store.append(stream, [NewEvent(type="Deposited", data={"amount": round_ + 1})])
    return store


@pytest.fixture
def p(store: EventStore) -> list[int]:
    """The log's positions in order, so p[4] is the fifth event's position on either store."""
    return log_positions(store)


def first(store: EventStore) -> Break:
    report = verify(store, seal_after=False)
    assert not report.ok, "verify found nothing"
    found = report.first_break
    assert found is not None
    return found


def test_an_untouched_log_verifies_and_gets_sealed(store: EventStore, p: list[int]) -> None:
    report = verify(store, max_events=5)
    assert report.ok and report.events == 12 and report.streams == 3
    assert (report.seals_verified, report.seals_added) == (0, 3)  # 5 + 5 + 2 events
    assert report.last_seal is not None and report.last_seal.to_position == p[11]
    store.append("acct-a", [NewEvent(type="Deposited", data={"amount": 9})])
    again = verify(store, max_events=5)
    assert again.ok and (again.seals_verified, again.seals_added) == (3, 1)


def test_an_edited_event_is_named_by_stream_version_and_position(store: EventStore, p: list[int]) -> None:
    seal(store)
    tamper(store, "UPDATE events SET data = '{\"amount\":1000}' WHERE global_position = ?", p[4])
    found = first(store)
    assert (found.kind, found.stream, found.stream_version, found.position) == ("edited", "acct-b", 1, p[4])
    assert "stream 'acct-b'" in found.describe() and f"position {p[4]}" in found.describe()


def test_an_edit_before_any_seal_is_found_by_the_chain(store: EventStore, p: list[int]) -> None:
    tamper(store, "UPDATE events SET metadata = '{}' WHERE global_position = ?", p[2])
    found = first(store)
    assert (found.kind, found.stream, found.position) == ("edited", "acct-c", p[2])
    with pytest.raises(TamperDetected, match=f"position {p[2]}"):
        seal(store)  # a broken range is never sealed


def test_an_edit_with_a_rewritten_hash_is_caught_by_the_next_event_or_the_seal(
    store: EventStore, p: list[int]
) -> None:
    seal(store, max_events=3)
    # Forge acct-c's last event (the 12th) and recompute its hash: its chain alone is fine. The
    # hash covers the stored text, exactly as the dialect reads it back for `verify`.
    dialect = dialect_for(store)
    with dialect.read_snapshot(store) as connection:
        row = dialect.chain_rows(connection, p[11], p[11], 1)[0]
        before = dialect.stored_event(connection, "acct-c", 2)
    assert before is not None
    previous = before[1]
    forged = '{"amount":1000000}'
    # chain row: (position, event_id, stream, version, type, schema_version, recorded_at,
    # occurred_at, metadata, data, hash); event_hash takes the previous hash, then the stored text.
    new_hash = event_hash(previous, *row[1:9], forged)
    tamper(
        store, "UPDATE events SET data = ?, event_hash = ? WHERE global_position = ?", forged, new_hash, p[11]
    )
    found = first(store)
    # Seal #4 holds the 10th to 12th events; seal ranges are contiguous in positions, so it starts
    # right after seal #3's end (on PostgreSQL that is below the 10th event's position).
    assert (found.kind, found.seal_no, found.position) == ("seal", 4, p[8] + 1)
    assert f"positions {p[8] + 1}..{p[11]}" in found.detail


def test_a_deleted_event_in_the_middle_of_a_stream_is_named(store: EventStore, p: list[int]) -> None:
    tamper(store, "DELETE FROM events WHERE global_position = ?", p[3])  # acct-a version 1
    found = first(store)
    assert (found.kind, found.stream, found.stream_version, found.position) == ("missing", "acct-a", 2, p[6])


def test_a_deleted_last_event_of_a_stream_breaks_its_seal(store: EventStore, p: list[int]) -> None:
    seal(store, max_events=6)
    tamper(store, "DELETE FROM events WHERE global_position = ?", p[10])  # acct-b's last event
    found = first(store)
    assert (found.kind, found.seal_no) == ("seal", 2)
    assert f"positions {p[5] + 1}..{p[11]}" in found.detail and "5 events now, 6 when sealed" in found.detail


def test_deleted_events_at_the_end_of_the_log_are_reported(store: EventStore, p: list[int]) -> None:
    seal(store)
    tamper(store, "DELETE FROM events WHERE global_position >= ?", p[10])
    kinds = {b.kind for b in verify(store, seal_after=False).breaks}
    assert "truncated" in kinds and "seal" in kinds


def test_events_of_different_streams_swapped_in_the_global_order_are_found(
    store: EventStore, p: list[int]
) -> None:
    seal(store, max_events=4)
    swap_positions(store, p[4], p[5])  # acct-b v1 <-> acct-c v1: each stream's own order is intact
    report = verify(store, seal_after=False)
    found = report.first_break
    assert found is not None and (found.kind, found.position) == ("reordered", p[5])  # its time goes back
    assert any(b.kind == "seal" and b.seal_no == 2 and b.position == p[3] + 1 for b in report.breaks)


def test_a_swap_with_equal_times_is_still_caught_by_the_seal(store_factory: StoreFactory) -> None:
    store = store_factory(clock=ManualClock())  # time stands still
    for stream in ("x-1", "y-1", "x-1", "y-1"):
        store.append(stream, [NewEvent(type="Noted", data={})])
    positions = log_positions(store)
    seal(store)
    swap_positions(store, positions[1], positions[2])  # y-1 v0 <-> x-1 v1
    found = first(store)
    assert (found.kind, found.seal_no) == ("seal", 1)


def test_events_of_one_stream_swapped_are_named(store: EventStore, p: list[int]) -> None:
    swap_positions(store, p[0], p[3])  # acct-a v0 <-> v1
    found = first(store)
    assert (found.kind, found.stream, found.stream_version, found.position) == (
        "reordered",
        "acct-a",
        1,
        p[0],
    )
    # Its time going back says so too; nothing was deleted or edited (the chain holds in version order).
    assert {b.kind for b in verify(store, seal_after=False).breaks} == {"reordered"}


def test_events_of_one_stream_renumbered_are_named(store: EventStore) -> None:
    seal(store)
    # acct-a's versions 0 and 1 exchange their places in the stream (positions untouched).
    for old, new in ((0, -1), (1, 0), (-1, 1)):
        tamper(
            store,
            "UPDATE events SET stream_version = ? WHERE stream_name = 'acct-a' AND stream_version = ?",
            new,
            old,
        )
    found = first(store)
    assert found.stream == "acct-a"


def test_an_altered_seal_table_is_reported(store: EventStore) -> None:
    seal(store, max_events=4)
    tamper(store, "UPDATE seals SET seal_hash = 'x' WHERE seal_no = 1")
    kinds = {(b.kind, b.seal_no) for b in verify(store, seal_after=False).breaks}
    assert ("seals", 2) in kinds and ("seal", 1) in kinds
