"""Catch-up subscriptions on asyncio: history, then the log live, with the checkpoint in the
handler's unit of work.

The twin of `chronik.subscriptions.CatchUpSubscription` with the same guarantees (its module
docstring): exactly-once effects for what the handler writes through the unit of work (a batch,
the handler's writes and the checkpoint commit together), no skipped events (it reads only up to
the readable head and continues after the last position scanned), global order. The handler is a
coroutine function, `async def handle(event, uow)`. Waiting for new events is the store's shared
watcher (`wait_for_events`): many subscriptions on one store cost one look at the head per change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from chronik.aio.store import AsyncEventStore, AsyncUnitOfWork
from chronik.events.envelope import RecordedEvent
from chronik.subscriptions.catchup import DEFAULT_BATCH_SIZE, StartFrom, SubscriptionBase

AsyncHandler = Callable[[RecordedEvent, AsyncUnitOfWork], Awaitable[None]]
"""Awaited once per event inside the batch's unit of work; raising rolls the whole batch back."""


class CatchUpSubscription(SubscriptionBase):
    """A named, durable reader of the whole log; its checkpoint is `subscription:<name>`."""

    def __init__(
        self,
        store: AsyncEventStore,
        name: str,
        handler: AsyncHandler,
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
        self._stop = asyncio.Event()

    async def position(self) -> int:
        """The last global position this subscription has dealt with (0: nothing yet)."""
        if self._position is None:
            saved = await self.store.load_checkpoint(self.checkpoint_name)
            head = await self.store.head_position() if saved is None and self.start == "end" else 0
            self._position = self._first_position(saved, lambda: head)
        return self._position

    async def poll(self) -> int:
        """Handle one batch of whatever is readable now; returns how many events were handled."""
        after = await self.position()
        head = await self.store.head_position()
        if head <= after:
            return 0
        page = await self.store.read_all(
            after + 1,
            to_position=head,
            categories=self.categories,
            event_types=self.event_types,
            limit=self.batch_size,
        )
        await self._handle_batch(page, self._scanned_to(page, head))
        return len(page)

    async def _handle_batch(self, events: Sequence[RecordedEvent], scanned_to: int) -> None:
        # The handler's writes and the checkpoint share one transaction: both or neither.
        async with self.store.transaction() as uow:
            for event in events:
                await self.handler(event, uow)
            await uow.save_checkpoint(self.checkpoint_name, scanned_to)
        self._position = scanned_to

    async def run_until_caught_up(self) -> int:
        """Handle everything readable now (history); returns how many events were handled."""
        total = 0
        while True:
            total += await self.poll()
            if await self.store.head_position() <= await self.position():
                return total

    async def run(self, *, idle_timeout: float | None = None) -> None:
        """Catch up, then follow the log live until `stop()`, cancellation, or `idle_timeout`
        seconds without events."""
        self._stop.clear()
        while not self._stop.is_set():
            await self.run_until_caught_up()
            if self._stop.is_set():
                return
            wait = self.poll_interval * 10 if idle_timeout is None else idle_timeout
            woke = await self.store.wait_for_events(await self.position(), wait)
            if not woke and idle_timeout is not None:
                return

    def stop(self) -> None:
        """Ask `run` to return after the batch in progress (from the store's event loop)."""
        self._stop.set()
