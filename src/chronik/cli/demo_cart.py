"""`chronik demo cart`: the shopping cart example's story told against a real store.

Every run uses fresh stream ids, so it can be run again and again on the same file. Each scene
prints what happened in the log, so the reader sees that state is only ever derived from events.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
from rich.console import Console

from chronik.cli.tables import history_table, print_events
from chronik.domain import aggregates
from chronik.errors import WrongExpectedVersion
from chronik.examples.cart import Cart, Product, check_out, load_products
from chronik.examples.money import euros
from chronik.store import EventStore

_encode = msgspec.json.Encoder().encode


def _show_state(console: Console, title: str, aggregate: Any, state: dict[str, Any]) -> None:
    console.print(f"[bold]{title}[/] ({type(aggregate).__name__} at version {aggregate.version}):")
    console.print_json(_encode(state).decode())


def run_cart_demo(store: EventStore, console: Console) -> None:
    run = uuid.uuid4().hex[:8]
    cart_id = run
    cart_stream = Cart.stream_name(cart_id)
    tea, mug = f"tea-{run}", f"mug-{run}"
    repository = aggregates.repository(store)
    persistent = not store.url.startswith("memory:")  # worth pointing other commands at afterwards
    console.rule("[bold]chronik demo: the shopping cart (an example application)")
    console.print(
        f"store: {store.url}\ncart: {cart_stream}   products: {Product.stream_name(tea)}, "
        f"{Product.stream_name(mug)}",
        highlight=False,
    )

    # 1. Events appended -----------------------------------------------------------------------
    console.rule("1. Facts are appended, never updated")
    start = store.head_position() + 1
    for sku, name, price in ((tea, "Green tea", 450), (mug, "Mug", 1200)):
        product = Product(sku)
        product.update(name=name, price_cents=price)
        repository.save(product, metadata={"actor": "catalogue"})
    cart = Cart(cart_id)
    cart.add_item(tea, 2)
    cart.add_item(mug, 1)
    repository.save(cart, metadata={"actor": "alice"})
    time.sleep(0.01)  # so that "before the last change" is also a distinct moment in recorded time
    cart.remove_item(tea, 1)
    repository.save(cart, metadata={"actor": "alice"})
    print_events(console, store.read_all(start), title="the log so far", with_time=False)

    # 2. Hydration -----------------------------------------------------------------------------
    console.rule("2. Hydration: state is the fold of the events")
    aggregate, state = aggregates.hydrate_stream(store, cart_stream)
    _show_state(console, f"{cart_stream} now", aggregate, state)

    # 3. Time travel ---------------------------------------------------------------------------
    console.rule("3. Time travel: the cart before its last change")
    before, last = store.read_stream(cart_stream, backwards=True, limit=2)[::-1]
    aggregate, state = aggregates.hydrate_stream(store, cart_stream, version=last.stream_version - 1)
    _show_state(console, f"{cart_stream} as of version {last.stream_version - 1}", aggregate, state)
    aggregate, state = aggregates.hydrate_stream(store, cart_stream, recorded_at=before.recorded_at)
    console.print(
        f"the same by time (what the store knew at {before.recorded_at.isoformat()}): items {state['items']}",
        highlight=False,
    )
    if persistent:
        console.print(
            f"try it: chronik state {cart_stream} --version {last.stream_version - 1} --store {store.url}",
            highlight=False,
        )

    # 4. A product update ----------------------------------------------------------------------
    console.rule("4. A product update: the price of tea goes up")
    product = repository.load(Product, tea)
    old_price = product.state.price_cents
    product.update(price_cents=500)
    repository.save(product, metadata={"actor": "catalogue"})
    console.print(
        f"{Product.stream_name(tea)}: {euros(old_price)} -> {euros(product.state.price_cents)}; "
        "the old price stays in the log:",
        highlight=False,
    )
    print_events(
        console, store.read_stream(Product.stream_name(tea)), title=Product.stream_name(tea), with_time=False
    )

    # 5. The race on a stale read --------------------------------------------------------------------
    console.rule("5. The race: a read just before a concurrent change")
    tab_a = repository.load(Cart, cart_id)
    tab_b = repository.load(Cart, cart_id)
    console.print(
        f"tab A and tab B both read {cart_stream} at version {tab_a.version}, "
        f"items {dict(tab_a.state.items)}",
        highlight=False,
    )
    tab_a.add_item(mug, 1)
    repository.save(tab_a, metadata={"actor": "alice (tab A)"})
    console.print(f"tab A adds a mug and saves first: version {tab_a.version}", highlight=False)
    products = load_products(repository, sorted(tab_b.state.items))
    tab_b.check_out({sku: p.state.price_cents for sku, p in products.items()})
    console.print(
        f"tab B, still on version {tab_b.version}, checks out {dict(tab_b.state.items)} "
        f"for {euros(tab_b.state.total_cents)} and saves...",
        highlight=False,
    )
    try:
        repository.save(tab_b, metadata={"actor": "alice (tab B)"}, depends_on=products.values())
    except WrongExpectedVersion as conflict:
        console.print(
            f"[bold red]conflict detected:[/] {conflict}\n"
            f"expected version {conflict.expected}, actual {conflict.actual}: nothing was written. "
            "In a table updated in place, tab B's stale write would have silently won.",
            highlight=False,
        )
    else:  # pragma: no cover - the store broke its contract
        raise AssertionError("a save on a stale version was accepted")

    def retried(error: WrongExpectedVersion, attempt: int) -> None:
        console.print(f"retry {attempt}: {error}", highlight=False)

    checked_out, _ = check_out(repository, cart_id, metadata={"actor": "alice (tab B)"}, on_conflict=retried)
    console.print(
        f"tab B reloads the fresh state (version {tab_a.version}) and decides again: "
        f"checked out {checked_out.state.items} at {checked_out.state.prices} cents "
        f"= [bold]{euros(checked_out.state.total_cents)}[/]",
        highlight=False,
    )

    # 6. A price change between reading the price and saving the checkout ----------------------
    console.rule("6. The same race on a price: a change between reading it and checking out")
    second = Cart(f"{run}-2")
    second.add_item(tea, 1)
    repository.save(second, metadata={"actor": "bob"})
    stale = repository.load(Cart, second.id)
    prices = load_products(repository, [tea])
    stale.check_out({tea: prices[tea].state.price_cents})
    console.print(
        f"bob's checkout read the tea price: {euros(prices[tea].state.price_cents)}",
        highlight=False,
    )
    product = repository.load(Product, tea)
    product.update(price_cents=550)
    repository.save(product, metadata={"actor": "catalogue"})
    console.print(f"meanwhile the catalogue changes it to {euros(550)}", highlight=False)
    try:
        repository.save(stale, metadata={"actor": "bob"}, depends_on=prices.values())
    except WrongExpectedVersion as conflict:
        console.print(f"[red]conflict:[/] {conflict}", highlight=False)
    bobs, _ = check_out(repository, second.id, metadata={"actor": "bob"})
    console.print(
        f"retried on fresh prices: bob pays [bold]{euros(bobs.state.total_cents)}[/], "
        "the price current at the moment of checkout",
        highlight=False,
    )

    # 7. The audit trail -----------------------------------------------------------------------
    console.rule("7. The audit trail")
    console.print(history_table(cart_stream, store.read_stream(cart_stream)))
    if persistent:
        console.print(
            f"explore: chronik history {cart_stream} --store {store.url}\n"
            f"         chronik state {cart_stream} --store {store.url}",
            highlight=False,
        )
