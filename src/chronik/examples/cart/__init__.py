"""The shopping cart example: carts, products, checkout at the prices of the moment.

Importing this package registers `Cart` (stream category "cart") and `Product` ("product") with
chronik's aggregate registry, so `chronik state cart-<id>` can show them.
"""

from chronik.domain import register_aggregate
from chronik.examples.cart.errors import (
    CartAlreadyCheckedOut,
    CartError,
    EmptyCartCheckout,
    InvalidProductUpdate,
    InvalidQuantity,
    ItemNotInCart,
    ProductNotPriced,
)
from chronik.examples.cart.events import CheckedOut, ItemAdded, ItemRemoved, ProductUpdated
from chronik.examples.cart.model import Cart, CartState, Product, ProductState
from chronik.examples.cart.services import check_out, load_products

register_aggregate(Cart)
register_aggregate(Product)

__all__ = [
    "Cart",
    "CartAlreadyCheckedOut",
    "CartError",
    "CartState",
    "CheckedOut",
    "EmptyCartCheckout",
    "InvalidProductUpdate",
    "InvalidQuantity",
    "ItemAdded",
    "ItemNotInCart",
    "ItemRemoved",
    "Product",
    "ProductNotPriced",
    "ProductState",
    "ProductUpdated",
    "check_out",
    "load_products",
]
