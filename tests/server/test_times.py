"""Times in requests: RFC 3339 on a date from 0001-01-02 to 9999-12-30, or a 422 naming field and range.

Converting `0001-01-01T00:00:00+14:00` or `9999-12-31T23:59:59-14:00` to UTC leaves Python's
calendar; before the rule these answered 500 (an `OverflowError` in `format_timestamp`), which
also closed the keep-alive connection. Every request of a test goes over one connection, and the
test checks that it stays open.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.server.conftest import LiveServer

BEFORE_YEAR_ONE = "0001-01-01T00:00:00+14:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:59-14:00"
FIRST_TAKEN = "0001-01-02T00:00:00+14:00"
LAST_TAKEN = "9999-12-30T23:59:59.999999-14:00"


class Connection:
    """One HTTP/1.1 connection to the server, reused for every request (and checked to stay so)."""

    def __init__(self, live: LiveServer) -> None:
        parts = urlsplit(live.url)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        self.connection.connect()
        self.socket = self.connection.sock

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        payload = json.dumps(body) if body is not None else None
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        answer = json.loads(response.read())
        assert not response.will_close, f"{method} {path} closed the connection ({response.status})"
        assert self.connection.sock is self.socket, "the connection was reopened"
        return response.status, answer


@pytest.fixture
def connection(live: LiveServer) -> Connection:
    return Connection(live)


def event(occurred_at: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "Happened", "data": {}}
    if occurred_at is not None:
        body["occurred_at"] = occurred_at
    return body


def assert_refused(status: int, answer: dict[str, Any], field: str, value: str) -> None:
    assert status == 422, answer
    assert answer["title"] == "Invalid request"
    [error] = answer["errors"]
    assert error["loc"][-1] == field
    assert value in error["msg"] and "from 0001-01-02 to 9999-12-30" in error["msg"], error


@pytest.mark.parametrize("value", [BEFORE_YEAR_ONE, AFTER_YEAR_9999])
def test_an_append_with_an_occurred_at_off_the_calendar_is_refused(
    connection: Connection, value: str
) -> None:
    status, answer = connection.send("POST", "/api/streams/dt-1/events", {"events": [event(value)]})
    assert_refused(status, answer, "occurred_at", value)
    many = {"appends": [{"stream": "dt-2", "events": [event(), event(value)]}]}
    assert_refused(*connection.send("POST", "/api/append", many), "occurred_at", value)
    status, answer = connection.send("GET", "/api/streams/dt-1/events")
    assert status == 404  # nothing was written, and the connection still answers


@pytest.mark.parametrize("value", [BEFORE_YEAR_ONE, AFTER_YEAR_9999])
@pytest.mark.parametrize("route", ["events", "state"])
@pytest.mark.parametrize("parameter", ["as_of", "occurred_as_of"])
def test_reading_as_of_a_time_off_the_calendar_is_refused(
    connection: Connection, value: str, route: str, parameter: str
) -> None:
    assert connection.send("POST", "/api/streams/note-dt/events", {"events": [event()]})[0] == 200
    status, answer = connection.send("GET", f"/api/streams/note-dt/{route}?{parameter}={quote(value)}")
    assert_refused(status, answer, parameter, value)


@pytest.mark.parametrize("value", [BEFORE_YEAR_ONE, AFTER_YEAR_9999])
def test_the_banks_times_off_the_calendar_are_refused(connection: Connection, value: str) -> None:
    opened = {"account_id": "dt", "owner": "Dee", "command_id": "open-dt"}
    status, answer = connection.send("POST", "/api/bank/accounts", {**opened, "occurred_at": value})
    assert_refused(status, answer, "occurred_at", value)
    assert connection.send("POST", "/api/bank/accounts", opened)[0] == 200
    for kind in ("deposits", "withdrawals"):
        money = {"amount_cents": 100, "command_id": f"{kind}-dt", "occurred_at": value}
        assert_refused(*connection.send("POST", f"/api/bank/accounts/dt/{kind}", money), "occurred_at", value)
    for path, parameter in [
        ("/api/bank/accounts/dt", "occurred_at"),
        ("/api/bank/accounts/dt", "recorded_at"),
        ("/api/bank/accounts/dt/statement", "start"),
        ("/api/bank/accounts/dt/statement", "end"),
        ("/api/bank/accounts/dt/statement", "known_at"),
    ]:
        status, answer = connection.send("GET", f"{path}?{parameter}={quote(value)}")
        assert_refused(status, answer, parameter, value)


def test_the_first_and_last_times_taken_are_stored_and_read_back(connection: Connection) -> None:
    status, answer = connection.send(
        "POST", "/api/streams/note-edge/events", {"events": [event(FIRST_TAKEN), event(LAST_TAKEN)]}
    )
    assert status == 200, answer
    status, page = connection.send("GET", f"/api/streams/note-edge/events?occurred_as_of={quote(LAST_TAKEN)}")
    assert status == 200, page
    assert [e["occurred_at"] for e in page["events"]] == [
        "0001-01-01T10:00:00+00:00",
        "9999-12-31T13:59:59.999999+00:00",
    ]
    status, page = connection.send("GET", f"/api/streams/note-edge/events?as_of={quote(FIRST_TAKEN)}")
    assert status == 200 and page["events"] == []  # recorded long after year 1


@pytest.mark.parametrize(
    "value",
    ["1307674368001", "2026-01-31", "2026-01-31 12:00:00Z", "2026-02-30T00:00:00Z", "2026-01-31T24:00:00Z"],
)
def test_only_rfc_3339_times_are_read(connection: Connection, value: str) -> None:
    """pydantic's own datetime also takes a Unix timestamp or a date alone; the schema says date-time."""
    status, answer = connection.send("GET", f"/api/streams/note-x/events?as_of={quote(value)}")
    assert status == 422, answer
    assert answer["errors"][0]["loc"] == ["query", "as_of"]
    status, answer = connection.send("POST", "/api/streams/note-x/events", {"events": [event(value)]})
    assert status == 422 and answer["errors"][0]["loc"][-1] == "occurred_at", answer


def test_a_time_without_an_offset_is_utc(connection: Connection) -> None:
    status, answer = connection.send(
        "POST", "/api/streams/note-utc/events", {"events": [event("2026-01-31T12:00:00")]}
    )
    assert status == 200, answer
    status, page = connection.send("GET", "/api/streams/note-utc/events")
    assert page["events"][0]["occurred_at"] == "2026-01-31T12:00:00+00:00"
