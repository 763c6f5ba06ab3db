"""Projections, consumer groups and the cart application over HTTP."""

from __future__ import annotations

import time

import httpx

from chronik.events.envelope import NewEvent, RecordedEvent
from chronik.groups import GroupConfig, GroupMember
from chronik.store import UnitOfWork
from tests.server.conftest import LiveServer, ServerFactory, event


def put_product(http: httpx.Client, sku: str, price: int) -> None:
    response = http.put(f"/api/cart/products/{sku}", json={"name": sku.title(), "price_cents": price})
    assert response.status_code == 200, response.text


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_cart_commands_and_lists(live: LiveServer, http: httpx.Client) -> None:
    put_product(http, "tea", 450)
    put_product(http, "mug", 1200)
    added = http.post("/api/cart/carts/c1/items", json={"sku": "tea", "quantity": 2})
    assert added.status_code == 200 and added.json()["state"]["items"] == {"tea": 2}
    http.post("/api/cart/carts/c1/items", json={"sku": "mug"})
    removed = http.delete("/api/cart/carts/c1/items/tea", params={"quantity": 1})
    assert removed.json()["state"]["items"] == {"tea": 1, "mug": 1}
    checked = http.post("/api/cart/carts/c1/checkout")
    assert checked.status_code == 200 and checked.json()["state"]["total_cents"] == 1650
    again = http.post("/api/cart/carts/c1/checkout")
    assert again.status_code == 409 and again.json()["error"] == "CartAlreadyCheckedOut"
    assert http.post("/api/cart/carts/nobody/checkout").status_code == 404
    assert http.post("/api/cart/carts/bad id/items", json={"sku": "tea"}).status_code == 422
    # the lists come from projections: the server catches them up on first use
    from chronik.projections import catch_up
    from chronik.server.routes.projections import projection_for

    for name in ("carts_by_status", "product_prices"):
        catch_up(projection_for(live.state, name))
    carts = http.get("/api/cart/carts").json()["carts"]
    assert [(c["cart_id"], c["status"], c["total_cents"]) for c in carts] == [("c1", "checked_out", 1650)]
    assert http.get("/api/cart/carts", params={"status": "open"}).json()["carts"] == []
    products = http.get("/api/cart/products").json()["products"]
    assert {p["sku"]: p["price_cents"] for p in products} == {"tea": 450, "mug": 1200}


def test_projection_status_rows_and_rebuild(live: LiveServer, http: httpx.Client) -> None:
    put_product(http, "tea", 450)
    http.post("/api/cart/carts/c1/items", json={"sku": "tea"})
    listed = {p["name"]: p for p in http.get("/api/projections").json()["projections"]}
    assert {"carts_by_status", "product_prices"} <= listed.keys()
    rebuild = http.post("/api/projections/carts_by_status/rebuild")
    assert rebuild.status_code == 202 and rebuild.json()["rebuild"]["state"] == "running"

    def done() -> bool:
        info = http.get("/api/projections/carts_by_status").json()
        return bool(info["rebuild"] and info["rebuild"]["state"] == "done")

    wait_for(done)
    info = http.get("/api/projections/carts_by_status").json()
    assert info["live_version"] == 2 and info["lag"] == 0 and info["building"] is None
    assert info["rebuild"]["result"]["new_version"] == 2
    rows = http.get("/api/projections/carts_by_status/tables/carts").json()
    assert rows["columns"][:2] == ["cart_id", "status"] and rows["rows"][0][:2] == ["c1", "open"]
    assert http.get("/api/projections/carts_by_status/tables/nope").status_code == 404
    assert http.get("/api/projections/nope").status_code == 404
    assert http.post("/api/projections/nope/rebuild").status_code == 404


def test_projections_on_a_store_without_sql(make_server: ServerFactory) -> None:
    from chronik.store import open_store

    live = make_server(store=open_store("memory://"))
    with live.client() as http:
        assert http.get("/api/projections").json() == {"projections": []}
        assert http.get("/api/cart/carts").status_code == 501


class Flaky:
    """A group handler that fails while `broken`."""

    def __init__(self) -> None:
        self.broken = True
        self.handled: list[int] = []

    def __call__(self, event: RecordedEvent, uow: UnitOfWork) -> None:
        if self.broken:
            raise RuntimeError("downstream is down")
        self.handled.append(event.global_position)
        uow.append("audit-1", [NewEvent(type="Seen", data={"position": event.global_position})])


def test_groups_status_parked_replay_and_discard(live: LiveServer, http: httpx.Client) -> None:
    for number in range(3):
        http.post(f"/api/streams/order-{number}/events", json={"events": [event("Placed")]})
    handler = Flaky()
    member = GroupMember(
        live.store,
        GroupConfig(name="billing", partitions=2, categories=("order",)),
        handler,
        max_attempts=1,
        backoff=0.001,
    )
    member.run(until_idle=True)
    groups = http.get("/api/groups").json()["groups"]
    assert [(g["name"], g["parked"], g["replayable"]) for g in groups] == [("billing", 3, False)]
    status = http.get("/api/groups/billing").json()
    assert len(status["partitions"]) == 2 and status["parked"] == 3
    assert {"owner", "epoch", "checkpoint", "lag", "parked", "lease_expires_at"} <= status["partitions"][
        0
    ].keys()
    parked = http.get("/api/groups/billing/parked").json()["parked"]
    assert len(parked) == 3 and "downstream is down" in parked[0]["error"]

    no_handler = http.post("/api/groups/billing/parked/replay", json={})
    assert no_handler.status_code == 409
    live.state.group_handlers["billing"] = handler
    failed = http.post("/api/groups/billing/parked/replay", json={"stream": parked[0]["stream"]}).json()
    assert failed["replayed"] == [] and len(failed["failed"]) == 1
    handler.broken = False
    replayed = http.post("/api/groups/billing/parked/replay", json={"parked_id": parked[0]["id"]}).json()
    assert replayed == {"replayed": [parked[0]["id"]], "failed": []}
    discarded = http.post("/api/groups/billing/parked/discard", json={"ids": [parked[1]["id"]]}).json()
    assert discarded == {"discarded": 1}
    assert len(http.get("/api/groups/billing/parked").json()["parked"]) == 1
    assert http.get("/api/groups/nope").status_code == 404
    assert http.get("/api/groups/nope/parked").status_code == 404
    assert http.post("/api/groups/nope/parked/replay", json={}).status_code == 404
    assert http.post("/api/groups/billing/parked/discard", json={"ids": []}).status_code == 422
