"""Catch-up subscriptions: read the log from a position through history, then follow it live.

Guarantees and where they come from:

* **Exactly-once effects for handlers that write through the unit of work.** A batch of events,
  every write the handler makes for them (`uow.append`, `uow.connection` on SQL stores) and the
  subscription's checkpoint commit in one transaction (`_handle_batch`). After a crash the
  subscription restarts from the last committed checkpoint, and whatever the crashed batch wrote
  was rolled back with it. Effects outside the store (e-mail, HTTP) are at-least-once.
* **No skipped events.** The reader asks only for positions up to `head_position()`, which the
  store promises is safe to read, and continues from `last scanned + 1`: positions may be sparse,
  so it never assumes `position + 1` exists.
* **Order.** Events reach the handler in global order, so each stream's events in stream order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Final, Literal

from chronik.events.envelope import RecordedEvent
from chronik.store import EventStore, UnitOfWork
from chronik.subscriptions.waiting import wait_for_new_events

log = logging.getLogger(__name__)

Handler = Callable[[RecordedEvent, UnitOfWork], None]
"""Called once per event inside the batch's unit of work; raising rolls the whole batch back."""

StartFrom = Literal["beginning", "end"] | int
"""Where a subscription without a checkpoint starts: the first event, after the current head, or
at a global position (inclusive)."""

DEFAULT_BATCH_SIZE: Final = 500
CHECKPOINT_PREFIX: Final = "subscription:"


class SubscriptionBase:
    """What the synchronous subscription and its asyncio twin (`chronik.aio.CatchUpSubscription`)
    share: the settings and their checks, the checkpoint's name, where a first run starts, and how
    far a page lets the checkpoint move."""

    def __init__(
        self,
        name: str,
        *,
        start: StartFrom = "beginning",
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = 0.05,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if isinstance(start, int) and start < 0:
            raise ValueError("a start position must be 0 or more")
        self.name = name
        self.start = start
        self.categories = list(categories) if categories else None
        self.event_types = list(event_types) if event_types else None
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._position: int | None = None  # last position scanned (handled or filtered out)

    @property
    def checkpoint_name(self) -> str:
        return CHECKPOINT_PREFIX + self.name

    def _first_position(self, saved: int | None, head: Callable[[], int]) -> int:
        """Where to resume: the checkpoint, else `start` (`head()` is asked only for "end")."""
        if saved is not None:
            return saved
        if self.start == "beginning":
            return 0
        if self.start == "end":
            return head()
        return max(0, self.start - 1)

    def _scanned_to(self, page: Sequence[RecordedEvent], head: int) -> int:
        """A short page means everything up to `head` was scanned, even positions the filter
        skipped: the checkpoint may then move to `head`, so a filtered-out tail is not re-read forever."""
        return page[-1].global_position if len(page) == self.batch_size else head


class CatchUpSubscription(SubscriptionBase):
    """A named, durable reader of the whole log (optionally filtered by category and event type).

    Its checkpoint is stored under `subscription:<name>` with the store's checkpoints; `start`
    matters only the first time, when no checkpoint exists yet.
    """

    def __init__(
        self,
        store: EventStore,
        name: str,
        handler: Handler,
        *,
        start: StartFrom = "beginning",
        categories: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = 0.05,
    ) -> None:
        super().__init__(
            name,
            start=start,
            categories=categories,
            event_types=event_types,
            batch_size=batch_size,
            poll_interval=poll_interval,
        )
        self.store = store
        self.handler = handler
        self._stop = threading.Event()

    @property
    def position(self) -> int:
        """The last global position this subscription has dealt with (0: nothing yet)."""
        if self._position is None:
            self._position = self._initial_position()
        return self._position

    def _initial_position(self) -> int:
        return self._first_position(
            self.store.load_checkpoint(self.checkpoint_name), self.store.head_position
        )

    def poll(self) -> int:
        """Handle one batch of whatever is readable now; returns how many events were handled."""
        after = self.position
        head = self.store.head_position()
        if head <= after:
            return 0
        page = self.store.read_all(
            after + 1,
            to_position=head,
            categories=self.categories,
            event_types=self.event_types,
            limit=self.batch_size,
        )
        self._handle_batch(page, self._scanned_to(page, head))
        return len(page)

    def _handle_batch(self, events: Sequence[RecordedEvent], scanned_to: int) -> None:
        # The handler's writes and the checkpoint share one transaction: both or neither.
        with self.store.transaction() as uow:
            for event in events:
                self.handler(event, uow)
            uow.save_checkpoint(self.checkpoint_name, scanned_to)
        self._position = scanned_to

    def run_until_caught_up(self) -> int:
        """Handle everything readable now (history), then return how many events were handled."""
        total = 0
        while True:
            handled = self.poll()
            total += handled
            if self.store.head_position() <= self.position:
                return total

    def run(self, *, idle_timeout: float | None = None) -> None:
        """Catch up, then follow the log live until `stop()` (or `idle_timeout` seconds without events)."""
        self._stop.clear()
        while not self._stop.is_set():
            self.run_until_caught_up()
            if self._stop.is_set():
                return
            wait = self.poll_interval * 10 if idle_timeout is None else idle_timeout
            woke = wait_for_new_events(self.store, self.position, wait, poll_interval=self.poll_interval)
            if not woke and idle_timeout is not None:
                return

    def stop(self) -> None:
        """Ask `run` to return after the batch in progress; safe from another thread."""
        self._stop.set()
