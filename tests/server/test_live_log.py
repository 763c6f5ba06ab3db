"""The server's live window (`server/live.py`): new events read once for every live subscriber,
filtered per subscriber, bounded in memory, with no gap between the window and the store."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import chronik.aio
from chronik.events.envelope import NewEvent
from chronik.server.live import LiveLog
from tests.server.conftest import LiveServer, event
from tests.server.test_subscription import read_sse


def append_when_subscribed(
    live: LiveServer, subscribers: int, appends: list[tuple[str, list[Any]]], statuses: list[int]
) -> threading.Thread:
    """Once `subscribers` subscriptions are open, append each (stream, events) in order."""

    def writer() -> None:
        deadline = time.monotonic() + 5
        while live.state.metrics.subscriptions.value() < subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        with live.client() as client:
            for stream, events in appends:
                answer = client.post(f"/api/streams/{stream}/events", json={"events": events})
                statuses.append(answer.status_code)

    thread = threading.Thread(target=writer)
    thread.start()
    return thread


def test_live_events_are_filtered_per_subscriber_and_cut_at_max_events(live: LiveServer) -> None:
    live.client().post("/api/streams/old-1/events", json={"events": [event("Old")]})
    appends = [
        ("shop-1", [event("Added"), event("Removed")]),
        ("till-1", [event("Deposited")]),
        ("shop-2", [event("Added"), event("Added"), event("Added")]),
    ]
    statuses: list[int] = []
    thread = append_when_subscribed(live, 2, appends, statuses)
    results: dict[str, httpx.Response] = {}

    def subscribe(name: str, params: dict[str, Any]) -> None:
        with live.client() as client:
            results[name] = client.get(
                "/api/log/subscribe", params={"from_position": 2, "timeout": 5, **params}
            )

    readers = [
        threading.Thread(target=subscribe, args=("added", {"type": "Added", "max_events": 3})),
        threading.Thread(target=subscribe, args=("till", {"category": "till", "max_events": 1})),
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    thread.join()
    assert statuses == [200, 200, 200]
    added = read_sse(results["added"])
    assert [(ident, data["stream"]) for name, ident, data in added if name == "message"] == [
        ("2", "shop-1"),
        ("5", "shop-2"),
        ("6", "shop-2"),
    ]
    # Cut at max_events inside one page of the window: it resumes at the first event not sent.
    assert added[-1] == ("end", None, {"reason": "max_events", "sent": 3, "next_position": 7})
    till = read_sse(results["till"])
    assert [(ident, data["type"]) for name, ident, data in till if name == "message"] == [("4", "Deposited")]
    # Past its last event: 5, or 8 when the window already held shop-2's events, none of them the till's.
    assert till[-1][2]["next_position"] in (5, 8)


def test_the_window_keeps_the_newest_events_and_says_what_it_covers(tmp_path: Path) -> None:
    async def run() -> None:
        store = await chronik.aio.open_store(f"sqlite:///{tmp_path / 'live.db'}")
        await store.append("early-1", NewEvent(type="Early", data={}))
        window = LiveLog(store, keep=3)
        await window.start()
        try:
            assert not window.covers(1) and window.covers(2)  # from the head at start on
            for number in range(8):
                await store.append(f"s-{number}", NewEvent(type="New", data={"n": number}))
            deadline = time.monotonic() + 10
            while window.scanned < 9 and time.monotonic() < deadline:
                await window.wait(window.scanned, 1.0)
            assert window.scanned == 9
            # Trimmed to the newest 3 whenever it held over 6: what it holds is everything after its floor.
            held = [event.global_position for event, _ in window.since(0)]
            assert 3 <= len(held) <= 6 and held == list(range(window.floor + 1, 10))
            assert not window.covers(window.floor) and window.covers(window.floor + 1)
            assert [event.global_position for event, _ in window.since(8)] == [8, 9]
            assert all(text.startswith(f"id: {e.global_position}\ndata: ") for e, text in window.since(0))
            assert await window.wait(9, 0.05) is False  # nothing new: the timeout, not an error
        finally:
            await window.stop()
            await store.close()

    asyncio.run(run())


def test_a_subscriber_behind_the_window_catches_up_from_the_store(live: LiveServer) -> None:
    window = live.state.live
    assert window is not None
    with live.client() as client:
        for number in range(12):
            client.post(f"/api/streams/s-{number}/events", json={"events": [event("Happened")]})
        deadline = time.monotonic() + 5
        while window.scanned < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        window.keep = 2
        window._trim()  # as after many more events: the window now starts after position 10
        assert window.floor == 10
        response = client.get(
            "/api/log/subscribe", params={"from_position": 1, "max_events": 12, "timeout": 5}
        )
    ids = [int(ident) for name, ident, _ in read_sse(response) if name == "message" and ident]
    assert ids == list(range(1, 13))
