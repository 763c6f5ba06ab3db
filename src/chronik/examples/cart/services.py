"""Operations that span aggregates: checkout reads product prices, then closes the cart.

The prices are read from the Product aggregates and the checkout is saved only if none of those
products changed in between (`depends_on`): the race where a read lands just before a
concurrent update, becomes a conflict that is retried on fresh prices, never a sale at a stale one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chronik.domain import AggregateNotFound, Repository
from chronik.errors import WrongExpectedVersion
from chronik.examples.cart.errors import ProductNotPriced
from chronik.examples.cart.model import Cart, Product
from chronik.store.contract import AppendResult


def load_products(repository: Repository, skus: list[str]) -> dict[str, Product]:
    products = {}
    for sku in skus:
        try:
            products[sku] = repository.load(Product, sku)
        except AggregateNotFound:
            raise ProductNotPriced(sku) from None
    return products


def check_out(
    repository: Repository,
    cart_id: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    on_conflict: Callable[[WrongExpectedVersion, int], object] | None = None,
) -> tuple[Cart, AppendResult]:
    """Check the cart out at the current prices, retrying when the cart or a price changes meanwhile."""

    def decide(cart: Cart) -> list[Product]:
        products = load_products(repository, sorted(cart.state.items))
        cart.check_out({sku: product.state.price_cents for sku, product in products.items()})
        return list(products.values())

    return repository.execute(Cart, cart_id, decide, metadata=metadata, on_conflict=on_conflict)
