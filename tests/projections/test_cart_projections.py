"""The cart example's read models, fed with raw events (the cart aggregate is not needed), on both SQL
stores: the same handler SQL (with `?` placeholders and qualified upserts) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from chronik import NewEvent
from chronik.examples.cart.projections import CartsByStatus, ProductPrices
from chronik.projections import ProjectionRunner, projection_named, rebuild, reconcile
from chronik.store import EventStore
from tests.conftest import StoreFactory
from tests.raw_sql import execute_behind_the_store


def cart_events(store: EventStore) -> None:
    store.append(
        "cart-1",
        [
            NewEvent(type="ItemAdded", data={"sku": "tea", "quantity": 2, "unit_price_cents": 450}),
            NewEvent(type="ItemAdded", data={"sku": "mug", "quantity": 1}),  # price unknown yet
            NewEvent(type="ItemAdded", data={"sku": "tea", "quantity": 1}),
            NewEvent(type="ItemRemoved", data={"sku": "tea", "quantity": 1}),
            NewEvent(type="CheckedOut", data={"prices": {"mug": 1200}}),
        ],
    )
    store.append(
        "cart-2",
        [
            NewEvent(type="ItemAdded", data={"sku": "tea"}),  # quantity defaults to 1
            NewEvent(type="ItemAdded", data={"quantity": "lots"}),  # no sku: ignored, cart still exists
            NewEvent(type="ItemRemoved", data={"sku": "tea"}),  # no quantity: the whole line
        ],
    )
    store.append(
        "cart-3",
        [
            NewEvent(type="ItemAdded", data={"sku": "pot", "quantity": 1}),
            NewEvent(type="CheckedOut", data={"total_cents": 3000, "extra": True}),
        ],
    )
    store.append(
        "product-tea", [NewEvent(type="ProductUpdated", data={"name": "Green tea", "price_cents": 450})]
    )
    store.append("product-tea", [NewEvent(type="ProductUpdated", data={"price_cents": 500})])  # name kept
    store.append("product-x", [NewEvent(type="ProductUpdated", data={"sku": "mug", "name": "Mug"})])


@pytest.mark.sql_stores
def test_carts_by_status_and_price_list(store_factory: StoreFactory) -> None:
    store = store_factory()
    carts, products = CartsByStatus(store), ProductPrices(store)
    carts.attach_inline()
    products.attach_inline()
    cart_events(store)
    assert carts.count_by_status() == {"checked_out": 2, "open": 1}
    assert carts.query("SELECT cart_id, status, items, total_cents FROM {carts} ORDER BY cart_id") == [
        ("1", "checked_out", 3, 2 * 450 + 1200),
        ("2", "open", 0, None),
        ("3", "checked_out", 1, 3000),
    ]
    assert carts.query(
        "SELECT sku, quantity, unit_price_cents FROM {cart_items} WHERE cart_id = '1' ORDER BY sku"
    ) == [
        ("mug", 1, 1200),
        ("tea", 2, 450),
    ]
    assert products.price_list() == [("mug", "Mug", None), ("tea", "Green tea", 500)]


@pytest.mark.sql_stores
def test_cart_projections_rebuild_and_reconcile(store_factory: StoreFactory) -> None:
    store = store_factory()
    carts = projection_named("carts_by_status")(store)  # found by name, as the CLI does
    products = ProductPrices(store)
    cart_events(store)
    ProjectionRunner(store, [carts, products]).run_until_caught_up()
    before = carts.query("SELECT * FROM {carts} ORDER BY cart_id")
    assert reconcile(carts).ok and reconcile(products).ok

    result = rebuild(carts, batch_size=3)
    assert result.new_version == 2
    assert carts.query("SELECT * FROM {carts} ORDER BY cart_id") == before

    tamper = "UPDATE product_prices__products__v1 SET price_cents = 1 WHERE sku = 'tea'"
    assert execute_behind_the_store(store, tamper) == 1
    report = reconcile(products)
    assert [(d.kind, d.key) for d in report.differences] == [("changed", {"sku": "tea"})]
    assert "price_cents: live 1 != rebuilt 500" in report.differences[0].describe()
