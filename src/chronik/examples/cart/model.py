"""The cart and product aggregates: each decides on its own state and records what it decided."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from chronik.domain import Aggregate, applies
from chronik.examples.cart.errors import (
    CartAlreadyCheckedOut,
    EmptyCartCheckout,
    InvalidProductUpdate,
    InvalidQuantity,
    ItemNotInCart,
    ProductNotPriced,
)
from chronik.examples.cart.events import CheckedOut, ItemAdded, ItemRemoved, ProductUpdated


class CartState(msgspec.Struct):
    items: dict[str, int] = msgspec.field(default_factory=dict)
    checked_out: bool = False
    prices: dict[str, int] = msgspec.field(default_factory=dict)  # as of checkout
    total_cents: int | None = None


class Cart(Aggregate[CartState]):
    """A shopping cart: items come and go until checkout, then it is closed for good."""

    category = "cart"
    snapshot_every = 50

    def add_item(self, sku: str, quantity: int = 1) -> None:
        self._check_open()
        _check_quantity(quantity)
        self.record(ItemAdded(sku, quantity))

    def remove_item(self, sku: str, quantity: int | None = None) -> None:
        """Remove `quantity` of an item (all of it when None)."""
        self._check_open()
        in_cart = self.state.items.get(sku, 0)
        quantity = in_cart if quantity is None else quantity
        _check_quantity(quantity)
        if quantity > in_cart:
            raise ItemNotInCart(self.id, sku, quantity, in_cart)
        self.record(ItemRemoved(sku, quantity))

    def check_out(self, prices: Mapping[str, int | None]) -> None:
        """Close the cart at these prices (cents per unit, by sku), the ones current right now."""
        self._check_open()
        if not self.state.items:
            raise EmptyCartCheckout(self.id)
        missing = [sku for sku in self.state.items if prices.get(sku) is None]
        if missing:
            raise ProductNotPriced(missing[0])
        used = {sku: price for sku in self.state.items if (price := prices.get(sku)) is not None}
        total = sum(used[sku] * quantity for sku, quantity in self.state.items.items())
        self.record(CheckedOut(used, total))

    def _check_open(self) -> None:
        if self.state.checked_out:
            raise CartAlreadyCheckedOut(self.id)

    @applies(ItemAdded)
    def _item_added(self, event: ItemAdded) -> None:
        self.state.items[event.sku] = self.state.items.get(event.sku, 0) + event.quantity

    @applies(ItemRemoved)
    def _item_removed(self, event: ItemRemoved) -> None:
        left = self.state.items.get(event.sku, 0) - event.quantity
        if left > 0:
            self.state.items[event.sku] = left
        else:
            self.state.items.pop(event.sku, None)

    @applies(CheckedOut)
    def _checked_out(self, event: CheckedOut) -> None:
        self.state.checked_out = True
        self.state.prices = dict(event.prices)
        self.state.total_cents = event.total_cents


class ProductState(msgspec.Struct):
    name: str = ""
    price_cents: int | None = None


class Product(Aggregate[ProductState]):
    """A product of the catalogue; its id is the sku."""

    category = "product"

    def update(self, *, name: str | None = None, price_cents: int | None = None) -> None:
        """Change the name, the price or both; a change to what it already is records nothing."""
        if name is None and price_cents is None:
            raise InvalidProductUpdate(self.id, "give a new name, a new price, or both")
        if name is not None and not name.strip():
            raise InvalidProductUpdate(self.id, "the name must not be blank")
        if price_cents is not None and (not isinstance(price_cents, int) or price_cents < 0):
            raise InvalidProductUpdate(self.id, f"the price must be whole cents >= 0, not {price_cents!r}")
        new_name = None if name == self.state.name else name
        new_price = None if price_cents == self.state.price_cents else price_cents
        if new_name is not None or new_price is not None:
            self.record(ProductUpdated(new_name, new_price))

    @applies(ProductUpdated)
    def _updated(self, event: ProductUpdated) -> None:
        if event.name is not None:
            self.state.name = event.name
        if event.price_cents is not None:
            self.state.price_cents = event.price_cents


def _check_quantity(quantity: int) -> None:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise InvalidQuantity(quantity)
