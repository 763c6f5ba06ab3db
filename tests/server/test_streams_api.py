"""Appending and reading streams, the whole log, and hydrated state, through a real uvicorn."""

from __future__ import annotations

import time
import uuid

import httpx

from chronik.events import NewEvent
from chronik.examples.cart import Cart
from tests.server.conftest import LiveServer, ServerFactory, event


def append(http: httpx.Client, stream: str, *events: dict[str, object], **body: object) -> httpx.Response:
    return http.post(f"/api/streams/{stream}/events", json={"events": list(events), **body})


def test_append_then_read_a_stream(http: httpx.Client) -> None:
    first = append(http, "order-1", event("Placed", total=10), event("Paid"), expected_version="no_stream")
    assert first.status_code == 200, first.text
    assert first.json()["stream_version"] == 1
    assert first.json()["global_positions"] == [1, 2]
    assert first.headers["etag"] == '"1"'

    read = http.get("/api/streams/order-1/events")
    assert read.status_code == 200
    body = read.json()
    assert body["version"] == 1
    assert [e["type"] for e in body["events"]] == ["Placed", "Paid"]
    assert body["events"][0]["data"] == {"total": 10}
    assert body["events"][0]["metadata"]["correlation_id"] == body["events"][0]["event_id"]
    assert read.headers["etag"] == '"1"'

    newest = http.get("/api/streams/order-1/events", params={"backwards": True, "limit": 1}).json()
    assert [e["type"] for e in newest["events"]] == ["Paid"]
    tail = http.get("/api/streams/order-1/events", params={"from_version": 1}).json()
    assert [e["stream_version"] for e in tail["events"]] == [1]


def test_a_version_conflict_is_a_409_problem_with_both_versions(http: httpx.Client) -> None:
    append(http, "order-2", event("Placed"))
    response = append(http, "order-2", event("Paid"), expected_version=5)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Wrong expected version"
    assert (problem["stream"], problem["expected"], problem["actual"]) == ("order-2", 5, 0)
    fresh = append(http, "order-3", event("Placed"), expected_version="stream_exists")
    assert fresh.status_code == 409 and fresh.json()["expected"] == "stream_exists"
    assert fresh.json()["actual"] is None


def test_expected_version_in_if_match_and_if_none_match(http: httpx.Client) -> None:
    url = "/api/streams/doc-1/events"
    body = {"events": [event("Written")]}
    assert http.post(url, json=body, headers={"If-None-Match": "*"}).status_code == 200
    assert http.post(url, json=body, headers={"If-None-Match": "*"}).status_code == 409
    etag = http.get(url).headers["etag"]
    assert http.post(url, json=body, headers={"If-Match": etag}).status_code == 200
    stale = http.post(url, json=body, headers={"If-Match": etag})
    assert stale.status_code == 409 and stale.json()["expected"] == 0 and stale.json()["actual"] == 1
    assert http.post(url, json=body, headers={"If-Match": "*"}).status_code == 200
    assert http.post("/api/streams/doc-2/events", json=body, headers={"If-Match": "*"}).status_code == 409
    bad = http.post(url, json=body, headers={"If-Match": "yesterday"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["header", "if-match"]
    # Every precondition must hold, as in HTTP: two that cannot both hold are a conflict (not a 400,
    # which a schema-valid request must never get), naming one that does not hold.
    both = http.post(url, json={**body, "expected_version": 7}, headers={"If-Match": '"2"'})
    assert both.status_code == 409 and (both.json()["expected"], both.json()["actual"]) == (7, 2)
    agreeing = http.post(url, json={**body, "expected_version": 2}, headers={"If-Match": 'W/"2"'})
    assert agreeing.status_code == 200 and agreeing.json()["stream_version"] == 3
    existing = http.post(url, json={**body, "expected_version": 3}, headers={"If-Match": "*"})
    assert existing.status_code == 200  # a version implies that the stream exists
    never = http.post(url, json=body, headers={"If-Match": "*", "If-None-Match": "*"})
    assert never.status_code == 409 and never.json()["expected"] == "no_stream"


def test_resending_the_same_event_ids_is_acknowledged_not_duplicated(http: httpx.Client) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    batch = [{"type": "A", "data": {}, "event_id": ids[0]}, {"type": "B", "data": {}, "event_id": ids[1]}]
    first = append(http, "pay-1", *batch, expected_version="no_stream").json()
    again = append(http, "pay-1", *batch, expected_version="no_stream").json()
    assert again["already_recorded"] is True
    assert again["global_positions"] == first["global_positions"]
    assert len(http.get("/api/streams/pay-1/events").json()["events"]) == 2
    elsewhere = append(http, "pay-2", batch[0])
    assert elsewhere.status_code == 409 and elsewhere.json()["title"] == "Duplicate event id"


def test_multi_stream_append_is_all_or_nothing(http: httpx.Client) -> None:
    append(http, "ledger-a", event("Opened"))
    ok = http.post(
        "/api/append",
        json={
            "appends": [
                {"stream": "ledger-a", "events": [event("Debited", amount=5)], "expected_version": 0},
                {
                    "stream": "ledger-b",
                    "events": [event("Credited", amount=5)],
                    "expected_version": "no_stream",
                },
            ]
        },
    )
    assert ok.status_code == 200, ok.text
    assert [r["stream_version"] for r in ok.json()["results"]] == [1, 0]
    refused = http.post(
        "/api/append",
        json={
            "appends": [
                {"stream": "ledger-a", "events": [event("Debited", amount=7)], "expected_version": 1},
                {"stream": "ledger-b", "events": [event("Credited", amount=7)], "expected_version": 5},
            ]
        },
    )
    assert refused.status_code == 409 and refused.json()["stream"] == "ledger-b"
    assert http.get("/api/streams/ledger-a/events").json()["version"] == 1  # the first part was not kept


def test_bad_input_is_a_400_or_422_and_nothing_is_written(http: httpx.Client) -> None:
    # the store's rules for names are the schema's patterns: a 422 naming the field
    bad_name = append(http, "bad name", event())  # white space in a stream name
    assert bad_name.status_code == 422 and bad_name.json()["errors"][0]["loc"] == ["path", "stream"]
    assert append(http, "-x", event()).status_code == 422
    bad_type = append(http, "ok-1", event("9starts-with-a-digit"))
    assert bad_type.status_code == 422 and bad_type.json()["errors"][0]["loc"][-1] == "type"
    nul = append(http, "ok-1", {"type": "A", "metadata": {"note": ["a\u0000b"]}})
    assert nul.status_code == 422 and "NUL" in nul.json()["errors"][0]["msg"]
    truth = append(http, "ok-1", {"type": "A", "schema_version": True})
    assert truth.status_code == 422  # JSON Schema's integer is no boolean (pydantic would read 1)
    assert http.post("/api/streams/ok-1/events", json={"nope": []}).status_code == 422
    assert (
        http.post(
            "/api/streams/ok-1/events", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400  # malformed JSON; a body that is JSON but does not fit the schema is 422 (test_bad_input.py)
    )
    huge = append(http, "ok-1", event(), expected_version=2**70)
    assert huge.status_code == 422
    assert huge.headers["content-type"] == "application/problem+json"
    assert http.get("/api/streams/ok-1/events", params={"from_version": -1}).status_code == 422
    assert http.get("/api/streams/ok-1/events", params={"from_version": 2**70}).status_code == 422
    assert http.get("/api/streams/ok-1/events").status_code == 404


def test_an_event_over_the_store_limit_is_a_413(make_server: ServerFactory) -> None:
    live = make_server(query="?max_event_bytes=2000")
    with live.client() as http:
        response = append(http, "blob-1", event("Big", text="x" * 5000))
    assert response.status_code == 413
    problem = response.json()
    assert problem["limit"] == 2000 and problem["size"] > 5000 and problem["event_type"] == "Big"


def test_a_request_body_over_the_server_limit_is_a_413(make_server: ServerFactory) -> None:
    live = make_server(max_body_bytes=4096)
    with live.client() as http:
        declared = append(http, "blob-2", event("Big", text="x" * 10_000))
        assert declared.status_code == 413 and declared.json()["limit"] == 4096

        def chunks() -> object:
            yield b'{"events": [{"type": "Big", "data": {"text": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}}]}'

        chunked = http.post(
            "/api/streams/blob-2/events", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        small = append(http, "blob-2", event("Small"))
        assert small.status_code == 200


def test_reading_as_of_a_past_moment(http: httpx.Client) -> None:
    append(http, "note-1", event("Drafted"))
    moment = http.get("/api/streams/note-1/events").json()["events"][0]["recorded_at"]
    time.sleep(0.01)
    append(http, "note-1", event("Published"))
    past = http.get("/api/streams/note-1/events", params={"as_of": moment}).json()
    assert [e["type"] for e in past["events"]] == ["Drafted"]
    business = append(http, "note-2", {"type": "Signed", "data": {}, "occurred_at": "2020-01-01T00:00:00Z"})
    assert business.status_code == 200
    before = http.get("/api/streams/note-2/events", params={"occurred_as_of": "2019-12-31T00:00:00"}).json()
    assert before["events"] == []


def test_stream_list_with_prefix_search(http: httpx.Client) -> None:
    for stream in ("basket-1", "basket-2", "item-1"):
        append(http, stream, event())
    names = [s["stream"] for s in http.get("/api/streams", params={"prefix": "basket-"}).json()["streams"]]
    assert names == ["basket-1", "basket-2"]
    listed = http.get("/api/streams").json()["streams"]
    assert {s["stream"]: s["event_count"] for s in listed} == {"basket-1": 1, "basket-2": 1, "item-1": 1}


def test_read_the_whole_log_with_filters_and_pages(http: httpx.Client) -> None:
    append(http, "basket-1", event("ItemAdded"), event("ItemRemoved"))
    append(http, "item-1", event("ProductUpdated"))
    append(http, "basket-2", event("ItemAdded"))
    everything = http.get("/api/log").json()
    assert [e["global_position"] for e in everything["events"]] == [1, 2, 3, 4]
    assert everything["head_position"] == 4
    carts = http.get("/api/log", params={"category": "basket"}).json()
    assert [e["stream"] for e in carts["events"]] == ["basket-1", "basket-1", "basket-2"]
    added = http.get("/api/log", params=[("type", "ItemAdded"), ("type", "ProductUpdated")]).json()
    assert [e["global_position"] for e in added["events"]] == [1, 3, 4]
    page = http.get("/api/log", params={"limit": 2}).json()
    assert page["next_from_position"] == 3
    rest = http.get("/api/log", params={"from_position": page["next_from_position"]}).json()
    assert [e["global_position"] for e in rest["events"]] == [3, 4]
    assert rest["next_from_position"] == 5


def test_one_operations_events_by_correlation_id(http: httpx.Client) -> None:
    meta = {"correlation_id": "op-42"}
    append(http, "a-1", {"type": "Started", "data": {}, "metadata": meta})
    append(http, "b-1", {"type": "Finished", "data": {}, "metadata": meta})
    append(http, "c-1", event("Unrelated"))
    found = http.get("/api/correlations/op-42").json()["events"]
    assert [e["stream"] for e in found] == ["a-1", "b-1"]


def test_hydrated_state_now_and_in_the_past(live: LiveServer, http: httpx.Client) -> None:
    from chronik.domain import aggregates

    repository = aggregates.repository(live.store)
    cart = Cart("k1")
    cart.add_item("tea", 2)
    repository.save(cart)
    time.sleep(0.01)
    cart.add_item("mug", 1)
    repository.save(cart)
    now = http.get("/api/streams/cart-k1/state").json()
    assert now["aggregate"] == "Cart" and now["version"] == 1
    assert now["state"]["items"] == {"tea": 2, "mug": 1}
    first = http.get("/api/streams/cart-k1/state", params={"version": 0}).json()
    assert first["state"]["items"] == {"tea": 2}
    recorded = http.get("/api/streams/cart-k1/events").json()["events"][0]["recorded_at"]
    by_time = http.get("/api/streams/cart-k1/state", params={"as_of": recorded}).json()
    assert by_time["version"] == 0
    by_business = http.get("/api/streams/cart-k1/state", params={"occurred_as_of": recorded}).json()
    assert by_business["version"] == 0
    # the bounds combine (they were refused with a 400, which a schema-valid request must never get)
    two = http.get("/api/streams/cart-k1/state", params={"version": 1, "as_of": recorded})
    assert two.status_code == 200 and two.json()["version"] == 0
    unknown = http.get("/api/streams/nothing-1/state")
    assert unknown.status_code == 404 and unknown.json()["category"] == "nothing"
    assert http.get("/api/streams/cart-nope/state").status_code == 404
    assert http.get("/api/streams/cart-/state").status_code == 404  # no aggregate without an id


def test_unknown_routes_and_methods_are_problems(http: httpx.Client) -> None:
    missing = http.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert http.delete("/api/streams").status_code == 405


def test_an_unexpected_error_is_a_bare_500_without_a_traceback(live: LiveServer, http: httpx.Client) -> None:
    def broken(**kwargs: object) -> object:
        raise RuntimeError("secret internals at /etc/passwd")

    live.store.list_streams = broken  # type: ignore[method-assign]
    response = http.get("/api/streams")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.json()["detail"] == "the error was logged on the server"


def test_health_readiness_and_security_headers(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["head_position"] == 0
    assert ready.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in ready.headers["content-security-policy"]


def test_openapi_schema_documents_every_endpoint(http: httpx.Client) -> None:
    paths = http.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/streams",
        "/api/streams/{stream}/events",
        "/api/streams/{stream}/state",
        "/api/append",
        "/api/log",
        "/api/log/subscribe",
        "/api/projections",
        "/api/projections/{name}/rebuild",
        "/api/groups/{group}/parked/replay",
        "/api/cart/carts",
        "/metrics",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path


def test_racing_appends_at_one_expected_version_exactly_one_wins(
    live: LiveServer, http: httpx.Client
) -> None:
    import threading

    append(http, "race-1", event("Opened"))
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        with live.client() as client:
            barrier.wait()
            response = append(client, "race-1", event("Claimed", by=number), expected_version=0)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] + [409] * 7
    events = http.get("/api/streams/race-1/events").json()["events"]
    assert [e["type"] for e in events] == ["Opened", "Claimed"]


def test_an_aggregates_stream_takes_only_events_its_aggregate_can_apply(
    live: LiveServer, http: httpx.Client
) -> None:
    """One such event made every later read of the stream fail (a 500 for /state, the bank's transfer
    list for everyone): a generic append into a category an aggregate owns is checked first (409)."""
    for body in ({"type": "Bogus"}, {"type": "ItemAdded", "data": {"quantity": 2}}):
        refused = append(http, "cart-fit", body)
        assert refused.status_code == 409 and refused.json()["error"] == "EventDoesNotFit", refused.text
        assert "aggregate Cart" in refused.json()["detail"]
    many = http.post(
        "/api/append",
        json={
            "appends": [
                {"stream": "note-fit", "events": [event()]},
                {"stream": "cart-fit", "events": [event()]},
            ]
        },
    )
    assert many.status_code == 409 and live.store.head_position() == 0  # nothing written
    assert append(http, "cart-fit", event("ItemAdded", sku="tea", quantity=2)).status_code == 200
    assert http.get("/api/streams/cart-fit/state").json()["state"]["items"] == {"tea": 2}


def test_recorded_events_an_aggregate_cannot_decode_are_a_conflict_not_a_server_error(
    live: LiveServer, http: httpx.Client
) -> None:
    """Written outside the API (or by older code): the state cannot be shown, and says why (409)."""
    live.store.append("cart-old", [NewEvent(type="ItemAdded", data={"quantity": 2})])
    answer = http.get("/api/streams/cart-old/state")
    assert answer.status_code == 409, answer.text  # it was a 500
    assert answer.json()["title"] == "Stored event does not decode" and "sku" in answer.json()["detail"]
    live.store.append("cart-odd", [NewEvent(type="Bogus", data={})])
    odd = http.get("/api/streams/cart-odd/state")
    assert odd.status_code == 409 and odd.json()["error"] == "UnknownEventType"  # it was a 404


def test_a_405_names_every_method_of_the_path(http: httpx.Client) -> None:
    """Starlette named only the first route's methods (GET), though the path also takes POST."""
    answer = http.request("OPTIONS", "/api/streams/note-1/events")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
