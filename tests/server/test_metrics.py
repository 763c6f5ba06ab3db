"""/metrics in the Prometheus text format: the exposition itself, and the figures the server publishes."""

from __future__ import annotations

import re
import threading
import time

import httpx

from chronik.groups import GroupConfig, GroupMember
from chronik.server.demo import start_demo
from chronik.server.metrics import Registry, parse_exposition
from tests.server.conftest import LiveServer, ServerFactory, event

_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? \S+$')


def test_exposition_format() -> None:
    registry = Registry()
    counter = registry.counter("things_total", "Things.", ("kind",))
    histogram = registry.histogram("wait_seconds", "Waits.", buckets=(0.1, 1.0))
    gauge = registry.gauge("level", "A level.")
    counter.inc('a "quoted"\nname')
    counter.inc("b", amount=2)
    histogram.observe(0.05)
    histogram.observe(0.5)
    histogram.observe(5.0)
    gauge.set(1.5)
    text = registry.render()
    assert "# TYPE things_total counter" in text and "# TYPE wait_seconds histogram" in text
    assert 'things_total{kind="a \\"quoted\\"\\nname"} 1' in text
    values = parse_exposition(text)
    assert values['wait_seconds_bucket{le="0.1"}'] == 1
    assert values['wait_seconds_bucket{le="1"}'] == 2
    assert values['wait_seconds_bucket{le="+Inf"}'] == 3
    assert values["wait_seconds_count"] == 3 and values["wait_seconds_sum"] == 5.55
    assert values["level"] == 1.5
    for line in text.splitlines():
        assert line.startswith("#") or _LINE.match(line), line


def test_the_server_publishes_appends_reads_lag_and_parked(live: LiveServer, http: httpx.Client) -> None:
    for number in range(3):
        http.post(f"/api/streams/order-{number}/events", json={"events": [event("Placed"), event("Paid")]})
    http.post("/api/streams/order-0/events", json={"events": [event()], "expected_version": 0})  # a conflict
    http.get("/api/streams/order-0/events")
    http.get("/api/log")
    http.get("/api/log/subscribe", params={"max_events": 2, "timeout": 3})

    def fail(event: object, uow: object) -> None:
        raise RuntimeError("no")

    GroupMember(
        live.store,
        GroupConfig(name="billing", partitions=2, event_types=("Paid",)),
        fail,
        max_attempts=1,
        backoff=0.001,
    ).run(until_idle=True)
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = parse_exposition(response.text)
    assert values['chronik_appends_total{outcome="ok"}'] == 3
    assert values['chronik_appends_total{outcome="conflict"}'] == 1
    assert values["chronik_appended_events_total"] == 6
    assert values["chronik_append_duration_seconds_count"] == 3
    assert values['chronik_reads_total{kind="stream"}'] == 1
    assert values['chronik_reads_total{kind="log"}'] == 1
    assert values["chronik_subscription_events_sent_total"] == 2
    assert values["chronik_subscriptions_active"] == 0
    assert values["chronik_log_head_position"] == 6
    assert values['chronik_group_parked_events{group="billing"}'] == 3
    assert values['chronik_group_lag_events{group="billing"}'] == 0
    assert values['chronik_group_partition_assignments_total{group="billing"}'] == 2
    assert (
        values[
            'chronik_http_requests_total{method="POST",route="/api/streams/{stream:path}/events",status="409"}'
        ]
        == 1
    )


def test_projection_lag_is_published(live: LiveServer, http: httpx.Client) -> None:
    from chronik.server.routes.projections import projection_for

    projection_for(live.state, "product_prices").ensure()
    http.put("/api/cart/products/tea", json={"price_cents": 100})
    values = parse_exposition(http.get("/metrics").text)
    assert values['chronik_projection_lag_events{projection="product_prices"}'] == 1
    assert values['chronik_projection_position{projection="product_prices"}'] == 0


def test_counters_are_published_at_zero_before_anything_happens(http: httpx.Client) -> None:
    values = parse_exposition(http.get("/metrics").text)
    assert values['chronik_appends_total{outcome="ok"}'] == 0
    assert values['chronik_appends_total{outcome="conflict"}'] == 0
    assert values['chronik_reads_total{kind="log"}'] == 0
    assert values["chronik_appended_events_total"] == 0


def test_appends_count_every_append_of_the_process_with_the_demo_workers_running(
    make_server: ServerFactory,
) -> None:
    """Issue #17.12: `chronik_appends_total` counted only HTTP appends (5 after about 900 demo events).

    The demo's seeding, shopper, bank clerk, receipt printer and transfer process manager all write
    through the server's store in its own process; with them stopped, the events counted are the log."""
    live = make_server()
    start_demo(live.state, interval=0.05, lease_ttl=3.0, seed=3, bank_interval=0.1, video=False)
    with live.client() as http:
        http.post("/api/streams/order-1/events", json={"events": [event("Placed")]})
        http.post("/api/streams/order-1/events", json={"events": [event()], "expected_version": 5})
        deadline = time.monotonic() + 30
        while live.state.demo["printer"].printed < 2 or live.state.demo["clerk"].actions < 5:
            assert time.monotonic() < deadline, "the demo's workers did not get going"
            time.sleep(0.05)
        for part in ("shopper", "clerk", "transfers"):
            live.state.demo[part].stop()
        for member in live.state.members:
            member.stop()
        for thread in threading.enumerate():
            if thread.name.startswith("demo-"):
                thread.join(10)
        values = parse_exposition(http.get("/metrics").text)
    head = live.store.head_position()
    assert head > 200  # a year of bank history, carts, receipts, transfers
    assert values["chronik_appended_events_total"] == head
    assert values['chronik_appends_total{outcome="ok"}'] > 100  # not just the one over HTTP
    assert values['chronik_appends_total{outcome="conflict"}'] >= 1
    assert values["chronik_append_duration_seconds_count"] == values['chronik_appends_total{outcome="ok"}']
