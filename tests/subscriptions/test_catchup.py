"""Catch-up subscriptions on every backend: history then live, filters, durable exactly-once checkpoints."""

from __future__ import annotations

import threading
import time

import pytest

from chronik import NewEvent, RecordedEvent
from chronik.store import EventStore, UnitOfWork
from chronik.subscriptions import CatchUpSubscription, wait_for_new_events
from tests.conftest import StoreFactory


def _append(store: EventStore, stream: str, *types: str) -> None:
    store.append(stream, [NewEvent(type=t, data={"n": i}) for i, t in enumerate(types)])


def test_reads_history_then_live_events(store: EventStore) -> None:
    _append(store, "cart-1", "Opened", "Added")
    seen: list[RecordedEvent] = []
    sub = CatchUpSubscription(store, "all", lambda event, uow: seen.append(event), poll_interval=0.01)
    worker = threading.Thread(target=sub.run)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        _append(store, "cart-2", "Opened")
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sub.stop()
        worker.join(10)
    assert [(e.stream, e.type) for e in seen] == [
        ("cart-1", "Opened"),
        ("cart-1", "Added"),
        ("cart-2", "Opened"),
    ]
    assert store.load_checkpoint(sub.checkpoint_name) == store.head_position()


def test_filters_by_category_and_event_type(store: EventStore) -> None:
    _append(store, "cart-1", "Opened", "Added")
    _append(store, "user-1", "Opened")
    _append(store, "cart-2", "Added")
    seen: list[RecordedEvent] = []
    sub = CatchUpSubscription(
        store, "f", lambda e, uow: seen.append(e), categories=["cart"], event_types=["Added"], batch_size=1
    )
    assert sub.run_until_caught_up() == 2
    assert [e.stream for e in seen] == ["cart-1", "cart-2"]
    # The filtered-out tail still moves the checkpoint: nothing is re-read.
    _append(store, "user-2", "Opened")
    assert sub.run_until_caught_up() == 0
    assert sub.position == store.head_position()


def test_start_at_end_or_at_a_position(store: EventStore) -> None:
    _append(store, "a-1", "X", "X", "X")
    at_end: list[int] = []
    CatchUpSubscription(
        store, "end", lambda e, uow: at_end.append(e.global_position), start="end"
    ).run_until_caught_up()
    assert at_end == []
    third = store.read_all()[2].global_position
    from_third: list[int] = []
    sub = CatchUpSubscription(store, "pos", lambda e, uow: from_third.append(e.global_position), start=third)
    sub.run_until_caught_up()
    assert from_third == [third]


def test_checkpoint_and_handler_writes_commit_together(store: EventStore) -> None:
    """A failing batch leaves neither its writes nor its checkpoint; the retry applies each effect once."""
    _append(store, "order-1", "Placed", "Placed", "Placed")
    fail_at = {3}

    def project(event: RecordedEvent, uow: UnitOfWork) -> None:
        if event.stream_version + 1 in fail_at:
            raise RuntimeError("boom")
        uow.append("seen-1", NewEvent(type="Seen", data={"source": event.global_position}))

    sub = CatchUpSubscription(store, "proj", project, categories=["order"])
    with pytest.raises(RuntimeError):
        sub.run_until_caught_up()
    assert store.stream_version("seen-1") is None  # the first two effects were rolled back too
    assert store.load_checkpoint(sub.checkpoint_name) is None
    fail_at.clear()
    restarted = CatchUpSubscription(store, "proj", project, categories=["order"])
    assert restarted.run_until_caught_up() == 3
    sources = [e.data["source"] for e in store.read_stream("seen-1")]
    assert sources == [e.global_position for e in store.read_stream("order-1")]
    # A third instance resumes after the checkpoint and applies nothing twice.
    assert CatchUpSubscription(store, "proj", project, categories=["order"]).run_until_caught_up() == 0
    assert len(store.read_stream("seen-1")) == 3


def test_wait_for_new_events_polls_head(store: EventStore) -> None:
    assert wait_for_new_events(store, store.head_position(), 0.05) is False
    _append(store, "a-1", "X")
    assert wait_for_new_events(store, 0, 1.0) is True


def test_wait_prefers_the_store_notification(store_factory: StoreFactory) -> None:
    store = store_factory()
    calls: list[tuple[int, float]] = []

    class Notifying:
        def __init__(self, inner: EventStore) -> None:
            self.inner = inner

        def head_position(self) -> int:
            raise AssertionError("a notifying store must not be polled")

        def wait_for_events(self, after_position: int, timeout: float) -> bool:
            calls.append((after_position, timeout))
            return True

    assert wait_for_new_events(Notifying(store), 7, 2.0) is True  # type: ignore[arg-type]
    assert calls == [(7, 2.0)]
