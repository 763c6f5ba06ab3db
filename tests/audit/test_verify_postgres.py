"""Tamper evidence on PostgreSQL: seals and the hash chain through the PostgreSQL dialect, with rows
edited and deleted by a raw psycopg connection behind the store's back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chronik import NewEvent
from chronik.audit import seal, verify
from chronik.store import EventStore
from tests.postgres_support import postgres_factory

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """Three streams, interleaved in the global order."""
    store = postgres_factory(tmp_path, request)()
    for round_ in range(4):
        for stream in ("acct-a", "acct-b", "acct-c"):
            store.append(stream, [NewEvent(type="Deposited", data={"amount": round_ + 1})])
    yield store
    store.close()


def raw(store: EventStore) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        store.conninfo,  # type: ignore[attr-defined]
        autocommit=True,
        options=f"-c search_path={store.schema}",  # type: ignore[attr-defined]
    )


def test_an_untouched_log_verifies_and_gets_sealed(store: EventStore) -> None:
    report = verify(store, max_events=5)
    assert report.ok and report.events == 12 and report.streams == 3
    assert (report.seals_verified, report.seals_added) == (0, 3)  # 5 + 5 + 2 events
    store.append("acct-a", [NewEvent(type="Deposited", data={"amount": 9})])
    again = verify(store, max_events=5)
    assert again.ok and (again.seals_verified, again.seals_added) == (3, 1)


def test_an_edited_event_is_named_by_stream_and_version(store: EventStore) -> None:
    seal(store)
    with raw(store) as connection:
        connection.execute(
            "UPDATE events SET data = '{\"amount\":1000}' WHERE stream_name = 'acct-b' AND stream_version = 1"
        )
    report = verify(store, seal_after=False)
    found = report.first_break
    assert not report.ok and found is not None
    assert (found.kind, found.stream, found.stream_version) == ("edited", "acct-b", 1)


def test_a_deleted_event_in_the_middle_of_a_stream_is_found(store: EventStore) -> None:
    seal(store)
    with raw(store) as connection:
        connection.execute("DELETE FROM events WHERE stream_name = 'acct-c' AND stream_version = 1")
    report = verify(store, seal_after=False)
    assert not report.ok and report.first_break is not None
    assert report.first_break.stream == "acct-c"


def _positions(store: EventStore) -> list[int]:
    return [event.global_position for event in store.read_all()]


def _swap(connection: psycopg.Connection[tuple[object, ...]], a: int, b: int) -> None:
    """Exchange the global positions of two rows (their order in the log), nothing else."""
    connection.execute("UPDATE events SET global_position = -1 WHERE global_position = %s", (a,))
    connection.execute("UPDATE events SET global_position = %s WHERE global_position = %s", (a, b))
    connection.execute("UPDATE events SET global_position = %s WHERE global_position = -1", (b,))


def test_events_of_different_streams_swapped_in_the_global_order_are_found(store: EventStore) -> None:
    positions = _positions(store)
    seal(store)
    with raw(store) as connection:
        _swap(connection, positions[4], positions[5])  # acct-b v1 <-> acct-c v1: each stream's order intact
    report = verify(store, seal_after=False)
    assert not report.ok and report.first_break is not None
    assert any(b.kind in ("reordered", "seal") for b in report.breaks)


def test_events_of_one_stream_reordered_are_named(store: EventStore) -> None:
    seal(store)
    with raw(store) as connection:  # acct-a's versions 0 and 1 exchange their places in the stream
        connection.execute(
            "UPDATE events SET stream_version = -1 WHERE stream_name = 'acct-a' AND stream_version = 0"
        )
        connection.execute(
            "UPDATE events SET stream_version = 0 WHERE stream_name = 'acct-a' AND stream_version = 1"
        )
        connection.execute(
            "UPDATE events SET stream_version = 1 WHERE stream_name = 'acct-a' AND stream_version = -1"
        )
    report = verify(store, seal_after=False)
    found = report.first_break
    assert not report.ok and found is not None and found.stream == "acct-a"
