"""`chronik serve --demo`: the example applications filled with demo data, and workers making them move.

What runs (all threads of the server process, stopped with it):

* the cart example's projections (`carts_by_status`, `product_prices`), kept current by a
  `ProjectionRunner`;
* a consumer group `receipts` (4 partitions) whose handler prints a receipt (a `ReceiptIssued`
  event in `receipt-<cart>`) for each checkout; its printer jams for a few seconds now and then,
  so events get retried, parked, and can be replayed from the console once it works again;
* a shopper: every second or two it adds items, removes one, checks a cart out or changes a price.

* the bank (`seed_bank`): five accounts with a year of back-dated history (salaries, rent, a
  deposit entered late), a few transfers; the transfer process manager (a `bank-transfers` group
  member), the `bank_accounts` and `bank_monthly_statements` projections, and a clerk who makes a
  deposit, a withdrawal or a transfer every few seconds (now and then one that is rejected);
* the video pipeline (`seed_video`, needs the `video` extra): a few synthetic clips uploaded, one
  of them corrupt (it fails, is parked, and can be retried from the console); video workers
  (threads, in this process); the `video_board` projection; and an uploader who adds a new short
  clip every half minute or so. Without PyAV the rest of the demo runs and the page says why the
  board is empty.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from chronik.clock import ManualClock
from chronik.domain import aggregates
from chronik.errors import ChronikError
from chronik.events.envelope import NewEvent, RecordedEvent
from chronik.examples.bank import TRANSFER_GROUP, Bank, transfer_manager
from chronik.examples.cart import Cart, Product, check_out
from chronik.examples.video import BlobStore, VideoWorker, make_sample_video, upload_video
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


BANK_ACCOUNTS: Final = (
    ("alice", "Alice Martin", 0),
    ("bob", "Bob Okafor", 50_000),
    ("carol", "Carol Nguyen", 0),
    ("dev", "Dev Patel", 20_000),
    ("eve", "Eve Larsen", 0),
)


def seed_bank(store: EventStore, *, now: datetime | None = None) -> int:
    """Five accounts with a year of history, and three transfers; once per store. Returns the commands run.

    On a fresh log the history is recorded on a manual clock that walks through the past year, so
    each entry's recorded time is its business time, as if the bank had been running all along;
    then one cash deposit from the spring is entered "today" but dated in the spring, so business
    time and recorded time differ for it (the console's time machine shows both). On a log that
    already holds events (recorded time never goes backwards) the history is back-dated by
    business time only. The transfers are only initiated: the process manager started by
    `start_demo` moves the money, so a newcomer sees them complete.
    """
    if store.list_streams(prefix="account-", limit=1):
        return 0
    bank = Bank(store, actor="demo-teller")
    now = now or datetime.now(UTC)
    year_ago = (now - timedelta(days=365)).replace(hour=9, minute=0, second=0, microsecond=0)
    manual = ManualClock(year_ago) if store.head_position() == 0 else None
    original_clock = store.clock
    if manual is not None:
        store.clock = manual  # nothing else writes yet: start_demo seeds before starting any worker

    def on(day: datetime) -> datetime | None:
        """Business time `day`: the clock's time on a fresh log, else an explicit back-dating."""
        if manual is None:
            return day
        manual.set(day)
        return None

    commands = 0
    salaries = {"alice": 310_000, "bob": 245_000, "carol": 198_000, "dev": 276_000, "eve": 150_000}
    rents = {"alice": 120_000, "bob": 135_000, "carol": 90_000, "dev": 110_000, "eve": 70_000}
    try:
        for account_id, owner, limit in BANK_ACCOUNTS:
            bank.open_account(
                account_id, owner, command_id="open", overdraft_limit_cents=limit, occurred_at=on(year_ago)
            )
            commands += 1
        for month in range(12):
            day = year_ago + timedelta(days=30 * month + 1)
            for step, (what, offset) in enumerate((("salary", 0), ("rent", 2), ("card", 14))):
                for index, (account_id, _, _) in enumerate(BANK_ACCOUNTS):
                    when = on(day + timedelta(days=offset, minutes=index + 10 * step))
                    if what == "salary":
                        bank.deposit(
                            account_id,
                            salaries[account_id],
                            command_id=f"salary-{month}",
                            description="salary",
                            occurred_at=when,
                        )
                    elif what == "rent":
                        bank.withdraw(
                            account_id,
                            rents[account_id],
                            command_id=f"rent-{month}",
                            description="rent",
                            occurred_at=when,
                        )
                    else:
                        spent = 20_000 + 9_000 * ((month * 7 + index * 3) % 11)  # some months are dearer
                        bank.withdraw(
                            account_id,
                            spent,
                            command_id=f"card-{month}",
                            description="card payments",
                            occurred_at=when,
                        )
                    commands += 1
        on(now - timedelta(days=2))
        bank.deposit(
            "carol",
            45_000,
            command_id="branch-deposit",
            description="cash deposit at the branch",
            occurred_at=year_ago + timedelta(days=95, hours=3),
        )
    finally:
        store.clock = original_clock
    for transfer_id, source, target, cents, reference in (
        ("demo-rent-share", "alice", "bob", 60_000, "rent share"),
        ("demo-dinner", "dev", "carol", 4_500, "dinner"),
        ("demo-too-much", "eve", "alice", 10_000_000, "a car"),  # rejected: not enough money
    ):
        bank.initiate_transfer(transfer_id, source, target, cents, reference=reference)
        commands += 1
    return commands + 1


class BankClerk:
    """Every `interval` seconds or so: a deposit, a withdrawal or a transfer between the demo's accounts."""

    def __init__(self, store: EventStore, *, interval: float, seed: int | None = None) -> None:
        self.bank = Bank(store, actor="demo-clerk")
        self.interval = interval
        self.random = random.Random(seed)
        self.actions = 0
        self._stop = threading.Event()

    def step(self) -> None:
        r = self.random
        ids = [account_id for account_id, _, _ in BANK_ACCOUNTS]
        command = f"clerk-{uuid.uuid4().hex[:10]}"
        roll = r.random()
        if roll < 0.3:
            self.bank.deposit(
                r.choice(ids), r.randrange(1_000, 40_000, 100), command_id=command, description="deposit"
            )
        elif roll < 0.5:
            self.bank.withdraw(
                r.choice(ids), r.randrange(1_000, 15_000, 100), command_id=command, description="cash machine"
            )
        else:
            source, target = r.sample(ids, 2)
            # now and then more than the source holds: the process manager rejects it
            cents = r.randrange(500, 30_000, 100) if r.random() < 0.9 else 50_000_000
            self.bank.initiate_transfer(
                command, source, target, cents, reference=r.choice(["lunch", "gift", "rent", "tickets"])
            )
        self.actions += 1

    def run(self) -> None:
        while not self._stop.wait(self.interval * self.random.uniform(0.6, 1.4)):
            try:
                self.step()
            except ChronikError as error:  # insufficient funds and the like: clerks shrug and go on
                log.info("bank clerk: %s", error)
            except Exception:
                log.exception("bank clerk step failed")

    def stop(self) -> None:
        self._stop.set()


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


def seed_video(store: EventStore, blobs: BlobStore, *, clips: int = 4) -> list[str]:
    """A few short synthetic clips and one corrupt file, uploaded once per store; returns the video ids.

    Needs PyAV (the `video` extra) to make the clips. The corrupt file is the bad upload: its
    attempts fail with a reason, it is parked, and the console's Retry button asks for another go.
    """
    if store.list_streams(prefix="video-", limit=1):
        return []
    samples = blobs.root / "demo-samples"
    ids = []
    for index in range(clips):
        path = make_sample_video(
            samples / f"clip-{index + 1}.mp4", seconds=1.0 + 0.5 * (index % 3), seed=index
        )
        ids.append(upload_video(store, blobs, path, uploader=("ann", "bob", "chen", "dara")[index % 4]))
    corrupt = samples / "holiday.mp4"
    corrupt.write_text("not a video at all, just a text file with the wrong name\n" * 20)
    ids.append(upload_video(store, blobs, corrupt, uploader="eve"))
    return ids


class VideoUploader:
    """Uploads a new small synthetic clip every `interval` seconds or so, so the board keeps moving."""

    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        *,
        interval: float,
        seed: int | None = None,
        limit: int = 100,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.limit = limit
        self.interval = interval
        self.random = random.Random(seed)
        self.uploads = 0
        self._stop = threading.Event()

    def step(self) -> str:
        self.uploads += 1
        name = f"clip-{time.strftime('%H%M%S')}.mp4"
        path = make_sample_video(
            self.blobs.root / "demo-samples" / name,
            seconds=self.random.choice((1.0, 1.5, 2.0)),
            seed=self.random.randrange(1_000_000),
        )
        try:
            return upload_video(
                self.store, self.blobs, path, uploader=self.random.choice(("ann", "bob", "chen"))
            )
        finally:
            path.unlink(missing_ok=True)  # the blob folder keeps its own copy, by hash

    def run(self) -> None:
        """Upload until stopped, or until `limit` clips (a demo left running overnight stays small)."""
        while self.uploads < self.limit and not self._stop.wait(
            self.interval * self.random.uniform(0.7, 1.3)
        ):
            try:
                self.step()
            except Exception:
                log.exception("video uploader step failed")

    def stop(self) -> None:
        self._stop.set()


@dataclass
class DemoThreads:
    """The demo's worker threads. At shutdown every one is told to stop first, then all are awaited
    together (10 s in all), so a video worker finishing a transcode does not hold the others up."""

    running: list[tuple[threading.Thread, Callable[[], None]]] = field(default_factory=list)

    def start(self, name: str, run: Callable[[], None], stop: Callable[[], None]) -> None:
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.running.append((thread, stop))

    def stop(self) -> None:
        for _, stop in self.running:
            stop()
        deadline = time.monotonic() + 10
        for thread, _ in self.running:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("demo thread %s did not stop within 10 s", thread.name)


def start_demo(
    state: ServerState,
    *,
    interval: float = 1.5,
    lease_ttl: float = 6.0,
    seed: int | None = None,
    bank_interval: float = 4.0,
    video: bool = True,
    video_workers: int = 2,
    upload_interval: float = 20.0,
    transcode_pause: float = 3.0,
) -> None:
    """Seed the three applications and start their workers; their stop functions go to `state.background`."""
    store = state.store
    seed_bank(store)  # first: on a fresh log its history is recorded through the past year
    seed_cart(store)
    with_video = video and state.blobs_dir is not None and importlib.util.find_spec("av") is not None
    if video and not with_video:
        log.warning(
            "demo without video workers: the pipeline transcodes with PyAV (pip install 'chronik[video]')"
        )
    blobs = BlobStore(state.blobs_dir) if with_video and state.blobs_dir is not None else None
    if blobs is not None:
        seed_video(store, blobs)
    names = ["carts_by_status", "product_prices", "bank_accounts", "bank_monthly_statements", "video_board"]
    try:
        projections = [projection_named(name)(store) for name in names]
    except UnsupportedStore as error:  # memory://: no SQL tables; the rest of the demo still runs
        log.warning("demo without projections: %s", error)
        projections = []
    for projection in projections:
        state.projections[projection.name] = projection
    if projections:
        runner = ProjectionRunner(store, projections)
        runner.start()
        state.background.append(runner.stop)

    threads = DemoThreads()
    state.background.append(threads.stop)
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
    threads.start("demo-receipts", member.run, member.stop)

    transfers = transfer_manager(store, member_id="demo-transfers", lease_ttl=lease_ttl)
    state.group_handlers[TRANSFER_GROUP] = transfers.handler
    state.members.append(transfers)
    threads.start("demo-transfers", transfers.run, transfers.stop)

    shopper = Shopper(store, printer, interval=interval, seed=seed)
    threads.start("demo-shopper", shopper.run, shopper.stop)
    clerk = BankClerk(store, interval=bank_interval, seed=seed)
    threads.start("demo-clerk", clerk.run, clerk.stop)
    state.demo = {"printer": printer, "shopper": shopper, "clerk": clerk, "transfers": transfers}

    if blobs is not None:
        workers = [
            # `transcode_pause`: a small clip transcodes in a blink; a pause lets the board show "processing"
            VideoWorker(
                store,
                blobs,
                worker_id=f"demo-video-{index + 1}",
                lease_ttl=30.0,
                max_attempts=2,
                slow_seconds=transcode_pause,
            )
            for index in range(video_workers)
        ]
        for worker in workers:
            threads.start(worker.worker_id, worker.run, worker.stop)
        uploader = VideoUploader(store, blobs, interval=upload_interval, seed=seed)
        threads.start("demo-uploader", uploader.run, uploader.stop)
        state.demo.update(video_workers=workers, uploader=uploader)
