"""The rules a cart or product command can break. Each is a `DomainError`: nothing was recorded."""

from __future__ import annotations

from chronik.errors import DomainError


class CartError(DomainError):
    """Base class of the cart example's domain errors."""


class CartAlreadyCheckedOut(CartError):
    def __init__(self, cart_id: str) -> None:
        self.cart_id = cart_id
        super().__init__(f"cart {cart_id!r} is already checked out: it cannot change any more")


class EmptyCartCheckout(CartError):
    def __init__(self, cart_id: str) -> None:
        self.cart_id = cart_id
        super().__init__(f"cart {cart_id!r} is empty: there is nothing to check out")


class ItemNotInCart(CartError):
    def __init__(self, cart_id: str, sku: str, quantity: int, in_cart: int) -> None:
        self.cart_id = cart_id
        self.sku = sku
        self.quantity = quantity
        self.in_cart = in_cart
        super().__init__(f"cannot remove {quantity} x {sku!r} from cart {cart_id!r}: it holds {in_cart}")


class InvalidQuantity(CartError):
    def __init__(self, quantity: int) -> None:
        self.quantity = quantity
        super().__init__(f"a quantity must be a whole number >= 1, not {quantity!r}")


class ProductNotPriced(CartError):
    def __init__(self, sku: str) -> None:
        self.sku = sku
        super().__init__(f"product {sku!r} has no price: it cannot be checked out")


class InvalidProductUpdate(CartError):
    def __init__(self, sku: str, reason: str) -> None:
        self.sku = sku
        self.reason = reason
        super().__init__(f"invalid update of product {sku!r}: {reason}")
