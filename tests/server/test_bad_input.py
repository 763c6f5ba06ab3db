"""Bad input gets an answer that names the problem (issue #17.9), through a real uvicorn.

Before: a negative quantity answered only "the request does not match the API schema" (which the
console showed as it was), malformed JSON was a 422 while docs/SERVER.md said 400, a body sent
without a Content-Type got pydantic's "Input should be a valid dictionary or object to extract
fields from", and the state at a version past the stream's end was silently its last version.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.conftest import event

PROBLEM = "application/problem+json"


def test_a_body_that_does_not_fit_the_schema_is_a_422_naming_each_field(http: httpx.Client) -> None:
    negative = http.post("/api/cart/carts/c1/items", json={"sku": "tea", "quantity": -3})
    assert negative.status_code == 422 and negative.headers["content-type"] == PROBLEM
    assert negative.json()["detail"] == "quantity: Input should be greater than or equal to 1"
    assert negative.json()["errors"] == [
        {"loc": ["body", "quantity"], "msg": "Input should be greater than or equal to 1"}
    ]
    nested = http.post("/api/streams/s-1/events", json={"events": [{"type": ""}], "expected_version": "x"})
    assert nested.status_code == 422
    detail = nested.json()["detail"]
    assert "events.0.type: String should have at least 1 character" in detail
    assert "expected_version" in detail
    query = http.get("/api/streams/s-1/events", params={"limit": "many"})
    assert query.status_code == 422
    assert query.json()["detail"].startswith("query parameter limit: Input should be a valid integer")


def test_malformed_json_is_a_400_saying_where_it_breaks(http: httpx.Client) -> None:
    broken = http.post(
        "/api/streams/s-1/events",
        content=b'{"events": [{"type": }]}',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 400 and broken.headers["content-type"] == PROBLEM
    assert broken.json()["title"] == "Malformed JSON"
    assert broken.json()["detail"] == "the body is not valid JSON: Expecting value (at character 21)"
    assert http.get("/api/streams/s-1/events").status_code == 404  # nothing written


def test_a_body_that_is_not_sent_as_json_is_a_415_saying_how_to_send_it(http: httpx.Client) -> None:
    body = b'{"events": [{"type": "Happened"}]}'
    for headers, sent in (
        ({}, "no Content-Type"),
        ({"content-type": "text/plain"}, "Content-Type 'text/plain'"),
    ):
        refused = http.post("/api/streams/s-1/events", content=body, headers=headers)
        assert refused.status_code == 415 and refused.headers["content-type"] == PROBLEM
        assert refused.json()["detail"] == (
            f"send the body as JSON with Content-Type: application/json (this request sent {sent})"
        )
    assert http.get("/api/streams/s-1/events").status_code == 404
    accepted = http.post(
        "/api/streams/s-1/events", content=body, headers={"content-type": "application/json"}
    )
    assert accepted.status_code == 200
    form = http.post("/api/video/videos", data={"uploader": "ann"})  # a form route is not a JSON one
    assert form.status_code == 422 and form.json()["detail"] == "file: Field required"


def test_the_openapi_declares_the_415_of_every_route_that_reads_json(http: httpx.Client) -> None:
    schema = http.get("/api/openapi.json").json()
    declared = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "415" in operation["responses"]
    }
    assert ("/api/streams/{stream}/events", "post") in declared
    assert ("/api/cart/carts/{cart_id}/items", "post") in declared
    assert ("/api/bank/transfers", "post") in declared
    assert ("/api/video/videos", "post") not in declared  # multipart
    assert ("/api/streams/{stream}/events", "get") not in declared
    for path, method in declared:
        assert "requestBody" in schema["paths"][path][method], (path, method)


def test_state_at_a_version_past_the_end_is_a_404_saying_the_last_version(http: httpx.Client) -> None:
    http.post("/api/cart/carts/c1/items", json={"sku": "tea"})
    http.post("/api/cart/carts/c1/items", json={"sku": "mug"})
    past = http.get("/api/streams/cart-c1/state", params={"version": 99})
    assert past.status_code == 404 and past.headers["content-type"] == PROBLEM
    assert past.json() | {"detail": ""} == {
        "type": "about:blank",
        "title": "Version not found",
        "status": 404,
        "detail": "",
        "stream": "cart-c1",
        "version": 99,
        "last_version": 1,
    }
    assert "has no version 99: its last version is 1" in past.json()["detail"]
    assert http.get("/api/streams/cart-c1/state", params={"version": 1}).json()["version"] == 1


def test_docs_list_the_expected_version_values_and_each_works_as_listed(http: httpx.Client) -> None:
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "SERVER.md").read_text().split())
    for value in ('`"any"`', '`"no_stream"`', '`"stream_exists"`', "an integer"):
        assert f"{value} (" in text, value
    for expected, status in (("no_stream", 200), ("stream_exists", 200), (1, 200), ("any", 200), (0, 409)):
        answer = append_expecting(http, expected)
        assert answer.status_code == status, (expected, answer.text)
    assert append_expecting(http, "no_stream").status_code == 409


def append_expecting(http: httpx.Client, expected: object) -> httpx.Response:
    return http.post("/api/streams/e-1/events", json={"events": [event()], "expected_version": expected})
