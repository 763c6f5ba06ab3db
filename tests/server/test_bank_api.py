"""The bank example over HTTP, against a real uvicorn: commands, idempotency, transfers, the time machine."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from chronik.examples.bank import Bank
from chronik.server.keys import keyring_for
from chronik.store import EventStore
from tests.server.conftest import LiveServer, ServerFactory

PROBLEM = "application/problem+json"


def open_account(http: httpx.Client, account: str, owner: str, **extra: object) -> httpx.Response:
    return http.post(
        "/api/bank/accounts",
        json={"account_id": account, "owner": owner, "command_id": f"open-{account}", **extra},
    )


def money(
    http: httpx.Client, account: str, kind: str, cents: int, command: str, **extra: object
) -> httpx.Response:
    return http.post(
        f"/api/bank/accounts/{account}/{kind}", json={"amount_cents": cents, "command_id": command, **extra}
    )


def test_open_deposit_withdraw_and_list(live: LiveServer, http: httpx.Client) -> None:
    opened = open_account(http, "alice", "Alice", overdraft_limit_cents=1000)
    assert opened.status_code == 200, opened.text
    assert opened.json()["account"]["status"] == "open" and opened.json()["already_done"] is False
    assert open_account(http, "bob", "Bob").status_code == 200
    deposited = money(http, "alice", "deposits", 5000, "salary-1", description="salary")
    assert deposited.status_code == 200 and deposited.json()["account"]["balance_cents"] == 5000
    withdrawn = money(http, "alice", "withdrawals", 5500, "rent-1")
    assert withdrawn.json()["account"]["balance_cents"] == -500  # within the overdraft limit
    listed = http.get("/api/bank/accounts").json()
    rows = {row["account_id"]: row for row in listed["accounts"]}
    assert rows.keys() == {"alice", "bob"}
    assert rows["alice"]["balance_cents"] == -500 and rows["alice"]["owner"] == "Alice"
    assert listed["total_balance_cents"] == -500
    assert [
        r["account_id"] for r in http.get("/api/bank/accounts", params={"prefix": "b"}).json()["accounts"]
    ] == ["bob"]


def test_a_resent_command_is_acknowledged_and_moves_no_money(http: httpx.Client) -> None:
    open_account(http, "carol", "Carol")
    first = money(http, "carol", "deposits", 700, "dep-1")
    again = money(http, "carol", "deposits", 700, "dep-1")
    assert first.json()["already_done"] is False
    assert again.status_code == 200 and again.json()["already_done"] is True
    assert again.json()["account"]["balance_cents"] == 700
    assert open_account(http, "carol", "Carol").json()["already_done"] is True


def test_a_command_id_reused_for_another_command_is_a_409_naming_both(
    make_server: ServerFactory, store: EventStore
) -> None:
    """On every backend: the id's recorded command and the one sent, in the problem body; no money moves."""
    with make_server(store=store).client() as http:
        open_account(http, "hal", "Hal")
        assert money(http, "hal", "deposits", 700, "dep-1").status_code == 200
        for kind, cents in (("deposits", 999), ("withdrawals", 700)):
            reused = money(http, "hal", kind, cents, "dep-1")
            assert reused.status_code == 409 and reused.headers["content-type"] == PROBLEM
            body = reused.json()
            assert (body["error"], body["command_id"], body["stream"]) == (
                "CommandIdReused",
                "dep-1",
                "account-hal",
            )
            assert body["recorded"]["kind"] == "deposit" and body["recorded"]["amount_cents"] == 700
            assert body["sent"]["amount_cents"] == cents and "dep-1" in body["detail"]
        assert http.get("/api/bank/accounts/hal").json()["balance_cents"] == 700
        taken = http.post(
            "/api/bank/accounts", json={"account_id": "hal", "owner": "Other", "command_id": "open-hal"}
        )
        assert taken.status_code == 409 and taken.json()["recorded"]["owner"] == "Hal"
        open_account(http, "ivy", "Ivy")
        transfer = {"transfer_id": "t-9", "source": "hal", "target": "ivy", "amount_cents": 10}
        assert http.post("/api/bank/transfers", json=transfer).status_code == 200
        other = http.post("/api/bank/transfers", json={**transfer, "amount_cents": 90})
        assert other.status_code == 409 and other.json()["sent"]["amount_cents"] == 90
        assert http.post("/api/bank/transfers", json=transfer).json()["already_done"] is True


def test_domain_refusals_and_bad_input_are_problems(http: httpx.Client) -> None:
    open_account(http, "dan", "Dan")
    broke = money(http, "dan", "withdrawals", 1, "w-1")
    # a refusal by the rules depends on what is recorded: 409, while 422 means "does not fit the schema"
    assert broke.status_code == 409 and broke.headers["content-type"] == PROBLEM
    assert broke.json()["error"] == "InsufficientFunds"
    taken = http.post(
        "/api/bank/accounts", json={"account_id": "dan", "owner": "Other", "command_id": "open-2"}
    )
    assert taken.status_code == 409 and taken.json()["error"] == "AccountAlreadyOpened"
    missing = money(http, "nobody", "deposits", 100, "d-1")
    assert missing.status_code == 404 and missing.json()["stream"] == "account-nobody"
    assert money(http, "dan", "deposits", 0, "d-0").status_code == 422  # the schema: amounts > 0
    assert money(http, "dan", "deposits", 10, "").status_code == 422  # a command id is required
    assert http.post("/api/bank/accounts/dan/deposits", json={"amount_cents": 5}).status_code == 422
    assert http.get("/api/bank/accounts/nobody").status_code == 404
    assert http.get("/api/bank/accounts/nobody/statement").status_code == 404
    assert http.get("/api/bank/accounts/nobody/months").status_code == 404
    assert http.get("/api/bank/transfers/nothing").status_code == 404
    before = http.get(
        "/api/bank/accounts/dan",
        params={"occurred_at": "2024-01-01T00:00:00Z", "recorded_at": "2024-01-01T00:00:00Z"},
    )
    assert before.status_code == 404  # both times together are one question: not opened yet then
    assert http.get("/api/bank/accounts/bad id").status_code == 422


def test_balance_and_statement_by_business_and_recorded_time(http: httpx.Client) -> None:
    open_account(http, "erin", "Erin", occurred_at="2020-01-01T00:00:00Z")
    money(http, "erin", "deposits", 10_000, "d-2021", occurred_at="2021-06-01T00:00:00Z")
    money(http, "erin", "deposits", 2_000, "d-2023", occurred_at="2023-06-01T00:00:00Z")
    known_before_late_entry = datetime.now(UTC)
    time.sleep(0.01)
    # entered now, back-dated to 2022: business time puts it in 2022, recorded time knows it only now
    money(http, "erin", "deposits", 500, "late", occurred_at="2022-03-01T12:00:00")

    then = http.get("/api/bank/accounts/erin", params={"occurred_at": "2022-12-31T00:00:00Z"}).json()
    assert then["balance_cents"] == 10_500 and then["basis"] == "business time"
    knew = http.get("/api/bank/accounts/erin", params={"recorded_at": known_before_late_entry.isoformat()})
    assert knew.json()["balance_cents"] == 12_000 and knew.json()["basis"] == "recorded time"
    assert http.get("/api/bank/accounts/erin").json()["balance_cents"] == 12_500
    # both times: what the bank, before the late entry, believed the balance was at the end of 2022
    # (a 400 before, though the schema admits both: now the bitemporal question it is)
    both = http.get(
        "/api/bank/accounts/erin",
        params={"occurred_at": "2022-12-31T00:00:00Z", "recorded_at": known_before_late_entry.isoformat()},
    ).json()
    assert both["balance_cents"] == 10_000 and both["basis"] == "business time, as recorded then"
    assert both["known_at"] is not None and both["as_of"].startswith("2022-12-31")
    before_opening = http.get("/api/bank/accounts/erin", params={"occurred_at": "2019-01-01T00:00:00Z"})
    assert before_opening.status_code == 404

    year = {"start": "2022-01-01T00:00:00Z", "end": "2022-12-31T23:59:59Z"}
    now = http.get("/api/bank/accounts/erin/statement", params=year).json()
    assert now["opening_balance_cents"] == 10_000 and now["closing_balance_cents"] == 10_500
    assert [line["amount_cents"] for line in now["lines"]] == [500]
    printed_then = http.get(
        "/api/bank/accounts/erin/statement", params={**year, "known_at": known_before_late_entry.isoformat()}
    ).json()
    assert printed_then["lines"] == [] and printed_then["closing_balance_cents"] == 10_000
    whole = http.get("/api/bank/accounts/erin/statement").json()
    assert [line["balance_cents"] for line in whole["lines"]] == [10_000, 10_500, 12_500]
    months = http.get("/api/bank/accounts/erin/months").json()["months"]
    assert [(m["month"], m["closing_balance_cents"]) for m in months] == [
        ("2021-06", 10_000),
        ("2022-03", 10_500),
        ("2023-06", 12_500),
    ]


def test_transfers_are_initiated_then_moved_by_the_process_manager(
    live: LiveServer, http: httpx.Client
) -> None:
    open_account(http, "fay", "Fay")
    open_account(http, "gil", "Gil")
    money(http, "fay", "deposits", 3_000, "d-1")
    lunch = {
        "transfer_id": "t-1",
        "source": "fay",
        "target": "gil",
        "amount_cents": 1_200,
        "reference": "lunch",
    }
    sent = http.post("/api/bank/transfers", json=lunch)
    assert sent.status_code == 200 and sent.json()["transfer"]["status"] == "initiated"
    # the very same request again (without the reference it would be another command: 409)
    resent = http.post("/api/bank/transfers", json=lunch)
    assert resent.json()["already_done"] is True
    too_big = {"transfer_id": "t-2", "source": "gil", "target": "fay", "amount_cents": 99_999}
    assert http.post("/api/bank/transfers", json=too_big).status_code == 200
    same = {"transfer_id": "t-3", "source": "fay", "target": "fay", "amount_cents": 1}
    assert http.post("/api/bank/transfers", json=same).json()["error"] == "InvalidTransfer"

    Bank(live.store).process_transfers()

    done = http.get("/api/bank/transfers/t-1").json()
    assert done["transfer"]["status"] == "completed"
    assert [(e["stream"], e["type"]) for e in done["trail"]] == [
        ("transfer-t-1", "TransferInitiated"),
        ("account-fay", "TransferDebited"),
        ("transfer-t-1", "TransferSourceDebited"),
        ("account-gil", "TransferCredited"),
        ("transfer-t-1", "TransferTargetCredited"),
        ("transfer-t-1", "TransferCompleted"),
    ]
    assert http.get("/api/bank/transfers/t-2").json()["transfer"]["status"] == "rejected"
    assert http.get("/api/bank/accounts/gil").json()["balance_cents"] == 1_200
    listed = http.get("/api/bank/transfers").json()["transfers"]
    assert {t["transfer_id"]: t["status"] for t in listed} == {"t-1": "completed", "t-2": "rejected"}
    assert [
        t["transfer_id"]
        for t in http.get("/api/bank/transfers", params={"account": "fay"}).json()["transfers"]
    ]
    books = http.get("/api/bank/ledger").json()
    assert books["ok"] and books["balanced"] and books["accounts"] == 2
    assert books["total_balance_cents"] == 3_000 and books["unfinished_transfers"] == []


def test_scopes_and_prefixes_apply(live: LiveServer) -> None:
    ring = keyring_for(live.store)
    _, reader = ring.create("reader", ["read"], now=live.store.clock())
    _, writer = ring.create("writer", ["append"], now=live.store.clock())
    _, carts = ring.create("carts", ["read", "append"], ["cart-"], now=live.store.clock())
    live.state.forget_key_cache()
    with live.client() as anonymous:
        assert anonymous.get("/api/bank/accounts").status_code == 401
    with live.client(writer) as http:
        assert open_account(http, "hal", "Hal").status_code == 200
        assert http.get("/api/bank/accounts").status_code == 403
    with live.client(reader) as http:
        assert http.get("/api/bank/accounts").status_code == 200
        refused = money(http, "hal", "deposits", 5, "d")
        assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    with live.client(carts) as http:
        assert http.get("/api/bank/accounts/hal").status_code == 403
        assert open_account(http, "ivy", "Ivy").status_code == 403
        assert http.get("/api/bank/ledger").status_code == 403


def test_account_list_on_a_memory_store_is_not_supported(make_server: object) -> None:
    from chronik.store import open_store

    live = make_server(store=open_store("memory://"))  # type: ignore[operator]
    with live.client() as http:
        assert open_account(http, "jo", "Jo").status_code == 200
        assert http.get("/api/bank/accounts/jo").json()["balance_cents"] == 0
        assert http.get("/api/bank/accounts").status_code == 501


def test_dates_in_the_past_are_recorded_as_business_time(http: httpx.Client) -> None:
    five_years_ago = (datetime.now(UTC) - timedelta(days=5 * 365)).isoformat()
    open_account(http, "kim", "Kim", occurred_at=five_years_ago)
    money(http, "kim", "deposits", 100, "old", occurred_at=five_years_ago)
    line = http.get("/api/bank/accounts/kim/statement").json()["lines"][0]
    assert (
        line["occurred_at"][:10] == five_years_ago[:10]
        and line["recorded_at"][:10] != line["occurred_at"][:10]
    )


def test_the_console_lists_the_three_applications(http: httpx.Client) -> None:
    apps = http.get("/api/info").json()["apps"]
    assert [app["name"] for app in apps] == ["cart", "bank", "video"]
    for name in ("bank", "video"):
        script = http.get(f"/static/apps/{name}.js")
        assert script.status_code == 200 and f'chronik.registerApp("{name}"' in script.text
