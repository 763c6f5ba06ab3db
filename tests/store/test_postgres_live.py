"""Live delivery on PostgreSQL: LISTEN/NOTIFY wakes a waiting reader soon after a commit."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from chronik import NewEvent
from chronik.store import EventStore

pytestmark = pytest.mark.postgres


def measure_delivery(writer: EventStore, reader: EventStore, count: int, pause: float) -> list[float]:
    """Seconds from each append's acknowledgement to the tailing reader holding the event."""
    committed_at: dict[int, float] = {}
    delivered_at: dict[int, float] = {}
    done = threading.Event()

    def tail() -> None:
        last = reader.head_position()
        while len(delivered_at) < count and not done.is_set():
            if not reader.wait_for_events(last, 1.0):
                continue
            for event in reader.read_all(last + 1):
                delivered_at[event.data["i"]] = time.monotonic()
                last = event.global_position

    thread = threading.Thread(target=tail)
    thread.start()
    time.sleep(0.3)  # the reader is waiting (and LISTENing) before the first append
    try:
        for i in range(count):
            writer.append("tick-1", NewEvent(type="Tick", data={"i": i}))
            committed_at[i] = time.monotonic()
            time.sleep(pause)
        thread.join(timeout=10)
    finally:
        done.set()
        thread.join()
    assert sorted(delivered_at) == list(range(count)), "the reader missed events"
    # A notification can beat the writer's own acknowledgement: that is zero latency, not negative.
    return [max(0.0, delivered_at[i] - committed_at[i]) for i in range(count)]


def test_commit_to_delivery_latency_is_well_below_polling(stores: tuple[EventStore, EventStore]) -> None:
    writer, reader = stores
    latencies = measure_delivery(writer, reader, count=40, pause=0.02)
    p50 = statistics.median(latencies)
    assert p50 < 0.1, f"p50 commit-to-delivery {p50 * 1000:.1f} ms"


def test_a_waiting_reader_is_woken_by_another_store(stores: tuple[EventStore, EventStore]) -> None:
    writer, reader = stores
    head = reader.head_position()
    timer = threading.Timer(0.3, lambda: writer.append("s-1", NewEvent(type="A", data={})))
    timer.start()
    started = time.monotonic()
    assert reader.wait_for_events(head, timeout=10)
    assert time.monotonic() - started < 5
    timer.join()
    assert reader.wait_for_events(reader.head_position(), timeout=0.3) is False
