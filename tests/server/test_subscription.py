"""The live subscription: catch-up then live, resumable with Last-Event-ID, always bounded."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx

from tests.server.conftest import LiveServer, event


def read_sse(response: httpx.Response) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event name, id, data) for every SSE event of a finished response."""
    out: list[tuple[str, str | None, dict[str, Any]]] = []
    for block in response.text.split("\n\n"):
        name, ident, data = "message", None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            out.append((name, ident, data))
    return out


def test_catch_up_then_live_then_end(live: LiveServer, http: httpx.Client) -> None:
    for number in range(3):
        http.post(f"/api/streams/s-{number}/events", json={"events": [event("Before")]})
    received: list[tuple[str, str | None, dict[str, Any]]] = []

    def writer() -> None:
        deadline = time.monotonic() + 5
        while live.state.metrics.subscriptions.value() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        with live.client() as other:
            other.post("/api/streams/s-live/events", json={"events": [event("Live"), event("Live")]})

    thread = threading.Thread(target=writer)
    thread.start()
    with live.client() as client:
        response = client.get(
            "/api/log/subscribe", params={"from_position": 2, "max_events": 4, "timeout": 10}
        )
    thread.join()
    received = read_sse(response)
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = [(ident, data["type"]) for name, ident, data in received if name == "message"]
    assert messages == [("2", "Before"), ("3", "Before"), ("4", "Live"), ("5", "Live")]
    names = [name for name, _, _ in received]
    assert names.index("caught_up") == 2  # after the backlog, before the live events
    assert received[-1] == ("end", None, {"reason": "max_events", "sent": 4, "next_position": 6})


def test_last_event_id_resumes_after_that_position(http: httpx.Client) -> None:
    http.post("/api/streams/s-1/events", json={"events": [event("A"), event("B"), event("C")]})
    response = http.get(
        "/api/log/subscribe", params={"max_events": 1, "timeout": 5}, headers={"Last-Event-ID": "2"}
    )
    [(_name, ident, data)] = [item for item in read_sse(response) if item[0] == "message"]
    assert (ident, data["type"]) == ("3", "C")
    bad = http.get("/api/log/subscribe", headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["header", "last-event-id"]


def test_filters_and_the_timeout_bound(http: httpx.Client) -> None:
    http.post("/api/streams/basket-1/events", json={"events": [event("ItemAdded")]})
    http.post("/api/streams/item-1/events", json={"events": [event("ProductUpdated")]})
    started = time.monotonic()
    response = http.get("/api/log/subscribe", params={"category": "item", "timeout": 0.5})
    assert time.monotonic() - started < 5
    received = read_sse(response)
    assert [data["stream"] for name, _, data in received if name == "message"] == ["item-1"]
    assert received[-1][0] == "end" and received[-1][2]["reason"] == "timeout"


def test_a_stopped_subscription_at_max_events_resumes_exactly(http: httpx.Client) -> None:
    http.post("/api/streams/s-1/events", json={"events": [event(name) for name in ("A", "B", "C", "D")]})
    first = read_sse(http.get("/api/log/subscribe", params={"max_events": 2, "timeout": 5}))
    resume = first[-1][2]["next_position"]
    second = read_sse(
        http.get("/api/log/subscribe", params={"from_position": resume, "max_events": 2, "timeout": 5})
    )
    seen = [data["type"] for name, _, data in first + second if name == "message"]
    assert seen == ["A", "B", "C", "D"]


def test_many_live_subscribers_take_no_thread_each(live: LiveServer) -> None:
    """120 live subscribers, three times the 40 threads FastAPI lends to blocking calls: one
    append reaches every one of them within a second and a half, because they all wait on the
    asyncio store's one shared head watcher (while each held a thread in `wait_for_events`,
    they were served 40 at a time, a second a round)."""
    subscribers = 120

    async def follow(client: httpx.AsyncClient, ready: asyncio.Semaphore) -> float:
        params = {"from_position": 1, "max_events": 1, "timeout": 20}
        async with client.stream("GET", "/api/log/subscribe", params=params) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: caught_up"):
                    ready.release()
                elif line.startswith("id: "):
                    return time.monotonic()
        return float("inf")

    async def run() -> list[float]:
        ready = asyncio.Semaphore(0)
        limits = httpx.Limits(max_connections=subscribers + 10)
        async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=30) as client:
            tasks = [asyncio.create_task(follow(client, ready)) for _ in range(subscribers)]
            for _ in range(subscribers):
                await asyncio.wait_for(ready.acquire(), 20)
            await asyncio.sleep(1.2)  # every subscriber is now waiting for the next event
            appended = time.monotonic()
            answer = await client.post("/api/streams/s-1/events", json={"events": [event("Live")]})
            assert answer.status_code == 200
            return [arrived - appended for arrived in await asyncio.gather(*tasks)]

    delays = asyncio.run(run())
    assert len(delays) == subscribers
    assert max(delays) < 1.5, sorted(delays)[-5:]
