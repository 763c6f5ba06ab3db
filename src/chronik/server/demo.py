"""`chronik serve --demo`: the seed's applications seeded, and workers making them move.

What runs (all threads of the server process, stopped with it):

* the cart example's projections (`carts_by_status`, `product_prices`), kept current by a
  `ProjectionRunner`;
* a consumer group `receipts` (4 partitions) whose handler prints a receipt (a `ReceiptIssued`
  event in `receipt-<cart>`) for each checkout; its printer jams for a few seconds now and then,
  so events get retried, parked, and can be replayed from the console once it works again;
* a shopper: every second or two it adds items, removes one, checks a cart out or changes a price.

Video and bank join here once their branch is merged (`seed_video`, `seed_bank` beside `seed_cart`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from chronik.domain import aggregates
from chronik.errors import ChronikError
from chronik.events.envelope import NewEvent, RecordedEvent
from chronik.examples.cart import Cart, Product, check_out
from chronik.groups import GroupConfig, GroupMember
from chronik.projections import ProjectionRunner, UnsupportedStore, projection_named
from chronik.server.context import ServerState
from chronik.store import EventStore, UnitOfWork

log = logging.getLogger("chronik.server.demo")

PRODUCTS: Final = (
    ("green-tea", "Green tea", 450),
    ("mug", "Mug", 1200),
    ("teapot", "Cast-iron teapot", 3900),
    ("honey", "Heather honey", 850),
    ("biscuits", "Oat biscuits", 320),
)
RECEIPTS_GROUP: Final = "receipts"


@dataclass
class ReceiptPrinter:
    """The receipts group's handler. While `jammed`, it fails: the group retries, then parks."""

    jammed: bool = False
    printed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: RecordedEvent, uow: UnitOfWork) -> None:
        if self.jammed:
            raise RuntimeError("receipt printer jammed (paper feed); replay once it prints again")
        data = event.data
        uow.append(
            f"receipt-{event.stream.partition('-')[2]}",
            [
                NewEvent(
                    type="ReceiptIssued",
                    data={"cart": event.stream, "total_cents": data.get("total_cents")},
                    metadata={"causation_id": str(event.event_id), "actor": "receipt-printer"},
                )
            ],
        )
        with self.lock:
            self.printed += 1


def seed_cart(store: EventStore) -> int:
    """Products and a few carts with some history, unless the store already has products."""
    if store.list_streams(prefix="product-", limit=1):
        return 0
    repository = aggregates.repository(store)
    for sku, name, price in PRODUCTS:
        product = Product(sku)
        product.update(name=name, price_cents=price)
        repository.save(product, metadata={"actor": "catalogue"})
    histories = {
        "alice-1": [
            ("add", "green-tea", 2),
            ("add", "mug", 1),
            ("remove", "green-tea", 1),
            ("checkout", "", 0),
        ],
        "bob-1": [("add", "teapot", 1), ("add", "honey", 2)],
        "carol-1": [
            ("add", "biscuits", 3),
            ("add", "green-tea", 1),
            ("price", "green-tea", 480),
            ("checkout", "", 0),
        ],
    }
    written = 0
    for cart_id, steps in histories.items():
        for action, sku, amount in steps:
            _act(store, cart_id, action, sku, amount, actor=cart_id.split("-")[0])
            written += 1
            time.sleep(0.002)  # distinct recorded times, so the time-travel slider has something to show
    return written


def _act(store: EventStore, cart_id: str, action: str, sku: str, amount: int, *, actor: str) -> None:
    repository = aggregates.repository(store)
    if action == "add":
        repository.execute(
            Cart, cart_id, lambda cart: cart.add_item(sku, amount), create=True, metadata={"actor": actor}
        )
    elif action == "remove":
        repository.execute(
            Cart, cart_id, lambda cart: cart.remove_item(sku, amount), metadata={"actor": actor}
        )
    elif action == "checkout":
        check_out(repository, cart_id, metadata={"actor": actor})
    elif action == "price":
        repository.execute(
            Product, sku, lambda product: product.update(price_cents=amount), metadata={"actor": "catalogue"}
        )


class Shopper:
    """Random but plausible activity, one action per `interval` seconds, until stopped."""

    def __init__(
        self, store: EventStore, printer: ReceiptPrinter, *, interval: float, seed: int | None = None
    ) -> None:
        self.store = store
        self.printer = printer
        self.interval = interval
        self.random = random.Random(seed)
        self.actions = 0
        self._stop = threading.Event()
        self._open: list[str] = []
        self._counter = 0

    def step(self) -> None:
        r = self.random
        roll = r.random()
        if not self._open or roll < 0.25:
            self._counter += 1
            shopper = r.choice(["dana", "erik", "fatima", "gus", "hana"])
            cart_id = f"{shopper}-{int(time.time()) % 100000}{self._counter}"
            self._open.append(cart_id)
            _act(
                self.store,
                cart_id,
                "add",
                r.choice(PRODUCTS)[0],
                r.randint(1, 3),
                actor=cart_id.split("-")[0],
            )
        elif roll < 0.6:
            cart_id = r.choice(self._open)
            _act(
                self.store,
                cart_id,
                "add",
                r.choice(PRODUCTS)[0],
                r.randint(1, 2),
                actor=cart_id.split("-")[0],
            )
        elif roll < 0.85:
            cart_id = self._open.pop(r.randrange(len(self._open)))
            _act(self.store, cart_id, "checkout", "", 0, actor=cart_id.split("-")[0])
        else:
            sku, _, price = r.choice(PRODUCTS)
            _act(self.store, "", "price", sku, max(100, price + r.randint(-60, 80)), actor="catalogue")
        self.actions += 1
        # The printer jams for about one action in twelve and clears after a few more.
        if not self.printer.jammed and r.random() < 1 / 12:
            self.printer.jammed = True
        elif self.printer.jammed and r.random() < 1 / 3:
            self.printer.jammed = False

    def run(self) -> None:
        while not self._stop.wait(self.interval * self.random.uniform(0.6, 1.4)):
            try:
                self.step()
            except ChronikError as error:  # a lost race or a domain refusal: shoppers shrug and go on
                log.info("shopper: %s", error)
            except Exception:
                log.exception("shopper step failed")

    def stop(self) -> None:
        self._stop.set()


def start_demo(
    state: ServerState, *, interval: float = 1.5, lease_ttl: float = 6.0, seed: int | None = None
) -> None:
    """Seed the cart example and start its workers; their stop functions go to `state.background`."""
    store = state.store
    seed_cart(store)
    try:
        projections = [projection_named(name)(store) for name in ("carts_by_status", "product_prices")]
    except UnsupportedStore as error:  # memory://: no SQL tables; the rest of the demo still runs
        log.warning("demo without projections: %s", error)
        projections = []
    for projection in projections:
        state.projections[projection.name] = projection
    if projections:
        runner = ProjectionRunner(store, projections)
        runner.start()
        state.background.append(runner.stop)

    printer = ReceiptPrinter()
    member = GroupMember(
        store,
        GroupConfig(name=RECEIPTS_GROUP, partitions=4, categories=("cart",), event_types=("CheckedOut",)),
        printer,
        lease_ttl=lease_ttl,
        max_attempts=3,
        backoff=0.1,
        max_backoff=0.5,
    )
    state.group_handlers[RECEIPTS_GROUP] = printer
    state.members.append(member)
    member_thread = threading.Thread(target=member.run, name="demo-receipts", daemon=True)
    member_thread.start()

    def stop_member() -> None:
        member.stop()
        member_thread.join(5)

    state.background.append(stop_member)

    shopper = Shopper(store, printer, interval=interval, seed=seed)
    shopper_thread = threading.Thread(target=shopper.run, name="demo-shopper", daemon=True)
    shopper_thread.start()

    def stop_shopper() -> None:
        shopper.stop()
        shopper_thread.join(5)

    state.background.append(stop_shopper)
    state.demo = {"printer": printer, "shopper": shopper}
