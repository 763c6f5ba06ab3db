"""The cart's events: add an item to a cart, check it out, update a product.

Prices are whole cents: exact in JSON and in arithmetic, with no float rounding to argue about.
"""

from __future__ import annotations

import msgspec


class ItemAdded(msgspec.Struct, frozen=True):
    sku: str
    quantity: int = 1


class ItemRemoved(msgspec.Struct, frozen=True):
    sku: str
    quantity: int = 1


class CheckedOut(msgspec.Struct, frozen=True):
    """The prices are the ones current when the customer checked out, kept with the event: a later
    price change must not change what was sold at what price."""

    prices: dict[str, int]
    total_cents: int


class ProductUpdated(msgspec.Struct, frozen=True):
    """A change to a product's name, price, or both (a field left None did not change)."""

    name: str | None = None
    price_cents: int | None = None
