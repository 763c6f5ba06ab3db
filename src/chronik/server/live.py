"""`LiveLog`: one reader of the log's newest events for every live subscriber of a server.

Without it, each SSE subscriber that is caught up reads the store itself when the head moves:
200 subscribers and one append make 200 reads of the same event and 200 JSON encodings of it.
`LiveLog` reads each new event once (one task, through the asyncio store's shared head watcher),
encodes its SSE text once, and keeps the newest `keep` events in memory; a subscriber whose next
position is inside that window takes its events from there, filtering them itself, and waits on
one condition. A subscriber behind the window (catching up on history) reads the store, as before,
until it reaches it.

No gap, no reordering: the window holds every event in the positions `(floor, scanned]`, read in
global order by `read_all`, which returns only what is safe to read; a position in that range
that is not in the window holds no readable event.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Final

from chronik.aio import AsyncEventStore
from chronik.events.envelope import RecordedEvent

logger = logging.getLogger("chronik.server")

PAGE: Final = 500
DEFAULT_KEEP: Final = 5000


def sse_text(event: RecordedEvent) -> str:
    """One recorded event as an SSE message: its global position as the `id`, its JSON as `data`."""
    return f"id: {event.global_position}\ndata: {json.dumps(event.to_dict(), separators=(',', ':'))}\n\n"


class LiveLog:
    """The newest events of the log, read once for all subscribers (`since`, `wait`)."""

    def __init__(self, store: AsyncEventStore, *, keep: int = DEFAULT_KEEP) -> None:
        self.store = store
        self.keep = keep
        self.floor = 0  # positions <= floor are not in the window
        self.scanned = 0  # every readable event in (floor, scanned] is in the window
        self._positions: list[int] = []
        self._events: list[tuple[RecordedEvent, str]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin at the current head: the window holds what is appended from now on."""
        self.floor = self.scanned = await self.store.head_position()
        self._task = asyncio.create_task(self._run(), name="chronik-live-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    def covers(self, position: int) -> bool:
        """Whether the events from `position` on are in the window (or not yet written)."""
        return self._task is not None and position > self.floor

    def since(self, position: int) -> Sequence[tuple[RecordedEvent, str]]:
        """The window's events at `position` and after, in global order, with their SSE text."""
        return self._events[bisect.bisect_left(self._positions, position) :]

    async def wait(self, after: int, timeout: float) -> bool:
        """Until the window has scanned past `after` (True), or `timeout` seconds pass (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)), self._changed:
                await self._changed.wait_for(lambda: self.scanned > after)
        return self.scanned > after

    async def _run(self) -> None:
        while True:
            try:
                if not await self.store.wait_for_events(self.scanned, 1.0):
                    continue
                head = await self.store.head_position()
                while self.scanned < head:
                    page = await self.store.read_all(self.scanned + 1, to_position=head, limit=PAGE)
                    for event in page:
                        self._positions.append(event.global_position)
                        self._events.append((event, sse_text(event)))
                    self.scanned = page[-1].global_position if len(page) >= PAGE else head
                self._trim()
                async with self._changed:
                    self._changed.notify_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the live log could not read the store; trying again in a second")
                await asyncio.sleep(1.0)

    def _trim(self) -> None:
        """Keep the newest `keep` events (trimming in steps, not one event at a time)."""
        if len(self._events) > 2 * self.keep:
            cut = len(self._events) - self.keep
            self.floor = self._positions[cut - 1]
            del self._positions[:cut], self._events[:cut]
