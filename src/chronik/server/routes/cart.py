"""The shopping cart example over HTTP: carts and products, read from their projections.

Commands go through the aggregates (`Cart`, `Product`) and the repository, so the domain's rules
and the checkout's price guard (`depends_on`) hold here exactly as in Python; lists come from the
cart example's projections (`carts_by_status`, `product_prices`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

import chronik.examples.cart.projections  # noqa: F401 - registers carts_by_status and product_prices
from chronik.domain import aggregates
from chronik.examples.cart import Cart, Product, check_out
from chronik.server.context import AppendKey, AppPage, ReadKey, ServerState, StateDep, check_stream_access
from chronik.server.models import NOT_A_BOOL, EntityId
from chronik.server.openapi import UNDECODABLE, problems
from chronik.server.routes.projections import projection_for

router = APIRouter(prefix="/api/cart", tags=["cart example"], responses=problems(503, UNDECODABLE))
NO_SQL: Final = (501, "The cart's read models are projections: not on `memory://`.")
NO_CART: Final = (404, "No such cart.")
REFUSED: Final = (
    409,
    "The cart refused it (`error`: checked out, empty, an item not in it, a product not priced).",
)
page = AppPage(
    name="cart",
    title="Cart",
    description="An example shopping cart: carts, products, checkout at the prices of the moment.",
)


class AddItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: EntityId
    quantity: Annotated[int, Field(ge=1, le=1_000_000), NOT_A_BOOL] = 1


# Not blank: at least one character that `str.strip` keeps (the product's own rule).
_NOT_BLANK: Final = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class ProductIn(BaseModel):
    """A new name, a new price, or both (the schema's `anyOf` says so, as `Product.update` does)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["name"], "properties": {"name": {"type": "string"}}},
                {"required": ["price_cents"], "properties": {"price_cents": {"type": "integer"}}},
            ]
        },
    )

    name: str | None = Field(default=None, max_length=200, pattern=_NOT_BLANK)
    price_cents: Annotated[int, Field(ge=0, le=10**12), NOT_A_BOOL] | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ProductIn:
        if self.name is None and self.price_cents is None:
            raise ValueError("give a new name, a new price, or both")
        return self


def _cart_out(cart: Cart) -> dict[str, Any]:
    return {"cart_id": cart.id, "stream": cart.stream, "version": cart.version, "state": cart.to_dict()}


@router.get("/carts", summary="Carts by status", responses=problems(NO_SQL))
def list_carts(
    state: StateDep,
    key: ReadKey,
    status: Annotated[str | None, Query(pattern="^(open|checked_out)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Carts from the `carts_by_status` projection, newest first."""
    check_stream_access(key, "cart-")
    where, parameters = ("WHERE status = ?", (status,)) if status else ("", ())
    rows = projection_for(state, "carts_by_status").query(
        f"SELECT cart_id, status, items, total_cents, updated_at FROM {{carts}} {where} "
        "ORDER BY updated_at DESC LIMIT ?",
        (*parameters, limit),
    )
    carts = [
        {"cart_id": r[0], "status": r[1], "items": r[2], "total_cents": r[3], "updated_at": r[4]}
        for r in rows
    ]
    return {"carts": carts}


@router.get("/products", summary="Product price list", responses=problems(NO_SQL))
def list_products(state: StateDep, key: ReadKey) -> dict[str, Any]:
    """Products from the `product_prices` projection."""
    check_stream_access(key, "product-")
    found = projection_for(state, "product_prices")
    columns = [name for name, _ in _columns(state, "product_prices", "products")]
    rows = found.query("SELECT * FROM {products} ORDER BY 1 LIMIT 1000")
    return {"products": [dict(zip(columns, row, strict=False)) for row in rows]}


def _columns(state: ServerState, projection: str, table: str) -> list[tuple[str, int]]:
    found = projection_for(state, projection)
    found.ensure()
    with found.dialect.read_snapshot(state.store) as connection:
        row = found.dialect.registry_row(connection, projection)
        assert row is not None
        physical = found.table_set(f"v{row.live_version}")[table]
        return found.dialect.columns(connection, physical)


@router.post("/carts/{cart_id}/items", summary="Add an item to a cart", responses=problems(REFUSED))
def add_item(cart_id: EntityId, body: AddItemIn, state: StateDep, key: AppendKey) -> dict[str, Any]:
    """Creates the cart on its first item."""
    check_stream_access(key, Cart.stream_name(cart_id))
    repository = aggregates.repository(state.store)

    def command(cart: Cart) -> None:
        cart.add_item(body.sku, body.quantity)

    cart, _ = repository.execute(Cart, cart_id, command, create=True, metadata={"actor": key.name})
    return _cart_out(cart)


@router.delete(
    "/carts/{cart_id}/items/{sku}", summary="Remove an item from a cart", responses=problems(NO_CART, REFUSED)
)
def remove_item(
    cart_id: EntityId,
    sku: EntityId,
    state: StateDep,
    key: AppendKey,
    quantity: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> dict[str, Any]:
    check_stream_access(key, Cart.stream_name(cart_id))
    repository = aggregates.repository(state.store)

    def command(cart: Cart) -> None:
        cart.remove_item(sku, quantity)

    cart, _ = repository.execute(Cart, cart_id, command, metadata={"actor": key.name})
    return _cart_out(cart)


@router.post(
    "/carts/{cart_id}/checkout",
    summary="Check a cart out at the current prices",
    responses=problems(NO_CART, REFUSED),
)
def checkout(cart_id: EntityId, state: StateDep, key: AppendKey) -> dict[str, Any]:
    """Reads the prices and saves only if none changed meanwhile (retried on fresh prices otherwise)."""
    check_stream_access(key, Cart.stream_name(cart_id))
    cart, _ = check_out(aggregates.repository(state.store), cart_id, metadata={"actor": key.name})
    return _cart_out(cart)


@router.put(
    "/products/{sku}",
    summary="Create or update a product",
    responses=problems((409, "Written concurrently, again and again (the retries ran out).")),
)
def update_product(sku: EntityId, body: ProductIn, state: StateDep, key: AppendKey) -> dict[str, Any]:
    check_stream_access(key, Product.stream_name(sku))
    repository = aggregates.repository(state.store)

    def command(product: Product) -> None:
        product.update(name=body.name, price_cents=body.price_cents)

    product, _ = repository.execute(Product, sku, command, create=True, metadata={"actor": key.name})
    return {
        "sku": product.id,
        "stream": product.stream,
        "version": product.version,
        "state": product.to_dict(),
    }
