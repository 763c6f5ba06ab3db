"""The seed's cart on every backend: its rules, checkout at current prices, and the race made safe."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronik.domain import Aggregate, Repository, aggregates
from chronik.errors import WrongExpectedVersion
from chronik.examples.cart import (
    Cart,
    CartAlreadyCheckedOut,
    EmptyCartCheckout,
    InvalidProductUpdate,
    InvalidQuantity,
    ItemNotInCart,
    Product,
    ProductNotPriced,
    check_out,
)
from chronik.store import AppendResult, EventStore


def stock(repository: Repository, **prices: int) -> None:
    for sku, price in prices.items():
        product = Product(sku)
        product.update(name=sku.title(), price_cents=price)
        repository.save(product)


def reprice(repository: Repository, sku: str, price: int) -> None:
    product = repository.load(Product, sku)
    product.update(price_cents=price)
    repository.save(product)


def filled_cart(repository: Repository, id: str = "c1", **items: int) -> Cart:
    cart = Cart(id)
    for sku, quantity in items.items():
        cart.add_item(sku, quantity)
    repository.save(cart)
    return cart


def test_checkout_records_the_prices_of_the_moment(store: EventStore) -> None:
    repository = Repository(store)
    stock(repository, tea=450, mug=1200)
    filled_cart(repository, tea=2, mug=1)
    cart, result = check_out(repository, "c1", metadata={"actor": "ann"})
    assert (cart.state.checked_out, cart.state.total_cents, result.stream_version) == (True, 2100, 2)
    reprice(repository, "tea", 999)  # later price changes do not rewrite a sale
    loaded = repository.load(Cart, "c1")
    assert (loaded.state.prices, loaded.state.total_cents) == ({"tea": 450, "mug": 1200}, 2100)
    last = store.read_stream("cart-c1")[-1]
    assert (last.type, last.actor) == ("CheckedOut", "ann")


def test_no_change_after_checkout(store: EventStore) -> None:
    repository = Repository(store)
    stock(repository, tea=450)
    filled_cart(repository, tea=1)
    check_out(repository, "c1")
    cart = repository.load(Cart, "c1")
    for command in (
        lambda: cart.add_item("tea"),
        lambda: cart.remove_item("tea"),
        lambda: cart.check_out({}),
    ):
        with pytest.raises(CartAlreadyCheckedOut, match="'c1' is already checked out"):
            command()
    with pytest.raises(CartAlreadyCheckedOut):
        check_out(repository, "c1")
    assert store.stream_version("cart-c1") == 1


def test_no_checkout_of_an_empty_cart(store: EventStore) -> None:
    repository = Repository(store)
    stock(repository, tea=450)
    with pytest.raises(EmptyCartCheckout):
        Cart("new").check_out({})
    cart = filled_cart(repository, tea=2)
    cart.remove_item("tea")  # all of it
    repository.save(cart)
    assert repository.load(Cart, "c1").state.items == {}
    with pytest.raises(EmptyCartCheckout, match="'c1' is empty"):
        check_out(repository, "c1")


def test_items_quantities_and_products_are_checked() -> None:
    cart = Cart("c1")
    cart.add_item("tea", 2)
    cart.add_item("tea", 1)
    cart.remove_item("tea", 2)
    assert cart.state.items == {"tea": 1}
    with pytest.raises(ItemNotInCart, match=r"remove 2 x 'tea'.*holds 1"):
        cart.remove_item("tea", 2)
    with pytest.raises(ItemNotInCart, match="holds 0"):
        cart.remove_item("cake", 1)
    for quantity in (0, -1, True):
        with pytest.raises(InvalidQuantity):
            cart.add_item("tea", quantity)
    with pytest.raises(ProductNotPriced, match="'tea'"):
        cart.check_out({"tea": None})
    product = Product("tea")
    for bad in ({}, {"name": " "}, {"price_cents": -1}):
        with pytest.raises(InvalidProductUpdate):
            product.update(**bad)
    product.update(name="Tea", price_cents=1)
    product.update(name="Tea", price_cents=1)  # no change, no event
    assert len(product.pending_events) == 1


def test_checkout_of_an_unknown_product_is_refused(store: EventStore) -> None:
    repository = Repository(store)
    filled_cart(repository, ghost=1)
    with pytest.raises(ProductNotPriced, match="'ghost'"):
        check_out(repository, "c1")


class RacingRepository(Repository):
    """Lets a concurrent writer commit just before this repository's next save: the seed's race."""

    def __init__(self, store: EventStore, concurrent_write: Any) -> None:
        super().__init__(store)
        self.concurrent_write = concurrent_write

    def save(self, aggregate: Aggregate[Any], **options: Any) -> AppendResult:
        if self.concurrent_write is not None:
            write, self.concurrent_write = self.concurrent_write, None
            write()
        return super().save(aggregate, **options)


def test_a_price_change_just_after_the_read_is_a_conflict_retried_at_the_new_price(
    store: EventStore,
) -> None:
    plain = Repository(store)
    stock(plain, tea=450)
    filled_cart(plain, tea=2)
    racing = RacingRepository(store, lambda: reprice(plain, "tea", 500))
    conflicts: list[WrongExpectedVersion] = []
    cart, _ = check_out(racing, "c1", on_conflict=lambda error, attempt: conflicts.append(error))
    assert [(error.stream, error.expected, error.actual) for error in conflicts] == [("product-tea", 0, 1)]
    assert (cart.state.prices, cart.state.total_cents) == ({"tea": 500}, 1000)
    assert [event.type for event in store.read_stream("cart-c1")] == ["ItemAdded", "CheckedOut"]


def test_a_checkout_just_before_an_add_turns_the_add_into_a_clear_refusal(store: EventStore) -> None:
    plain = Repository(store)
    stock(plain, tea=450)
    filled_cart(plain, tea=1)
    racing = RacingRepository(store, lambda: check_out(plain, "c1"))
    with pytest.raises(CartAlreadyCheckedOut):
        racing.execute(Cart, "c1", lambda cart: cart.add_item("tea"))
    assert [event.type for event in store.read_stream("cart-c1")] == ["ItemAdded", "CheckedOut"]


def test_importing_the_example_registers_its_aggregates(store: EventStore) -> None:
    assert aggregates.for_stream("cart-c1") is Cart
    assert aggregates.for_stream("product-tea") is Product
    repository = aggregates.repository(store)
    stock(repository, tea=450)
    filled_cart(repository, tea=3)
    _, state = aggregates.hydrate_stream(store, "cart-c1")
    assert state == {"items": {"tea": 3}, "checked_out": False, "prices": {}, "total_cents": None}


example_ids = itertools.count()
operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "checkout"]), st.sampled_from(["tea", "mug"]), st.integers(1, 3)
    ),
    max_size=15,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_a_cart_behaves_like_a_plain_model_and_reloads_identically(
    store: EventStore, steps: list[tuple[str, str, int]]
) -> None:
    prices = {"tea": 450, "mug": 1200}
    model: dict[str, int] = {}
    closed = False
    cart = Cart(f"model{next(example_ids)}")
    for operation, sku, quantity in steps:
        try:
            if operation == "add":
                cart.add_item(sku, quantity)
            elif operation == "remove":
                cart.remove_item(sku, quantity)
            else:
                cart.check_out(prices)
        except (CartAlreadyCheckedOut, EmptyCartCheckout, ItemNotInCart):
            refused = True
        else:
            refused = False
        expect_refusal = closed or (
            (operation == "remove" and model.get(sku, 0) < quantity)
            or (operation == "checkout" and not model)
        )
        assert refused == expect_refusal
        if not refused:
            if operation == "add":
                model[sku] = model.get(sku, 0) + quantity
            elif operation == "remove":
                model[sku] -= quantity
                model = {key: value for key, value in model.items() if value}
            else:
                closed = True
    assert (cart.state.items, cart.state.checked_out) == (model, closed)
    if cart.pending_events:
        repository = Repository(store)
        repository.save(cart)
        assert repository.load(Cart, cart.id).state == cart.state
