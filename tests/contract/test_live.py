"""`wait_for_events`: a tailing reader is woken by new events instead of sleeping, on every backend."""

from __future__ import annotations

import threading
import time

from chronik import EventStore, NewEvent


def test_wait_times_out_when_nothing_is_appended(store: EventStore) -> None:
    started = time.monotonic()
    assert store.wait_for_events(store.head_position(), timeout=0.2) is False
    assert time.monotonic() - started >= 0.19


def test_wait_returns_at_once_when_the_head_is_already_past(store: EventStore) -> None:
    store.append("s-1", NewEvent(type="A", data={}))
    started = time.monotonic()
    assert store.wait_for_events(0, timeout=5) is True
    assert time.monotonic() - started < 2


def test_wait_wakes_for_an_append_from_another_thread(store: EventStore) -> None:
    head = store.append("s-1", NewEvent(type="A", data={})).global_positions[-1]

    def later() -> None:
        time.sleep(0.2)
        store.append("s-2", NewEvent(type="B", data={}))

    writer = threading.Thread(target=later)
    writer.start()
    try:
        assert store.wait_for_events(head, timeout=10) is True
        assert [e.type for e in store.read_all(head + 1)] == ["B"]
    finally:
        writer.join()
