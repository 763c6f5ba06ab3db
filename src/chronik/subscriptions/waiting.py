"""How a reader that has caught up waits for the next event: the one place that decides.

A backend that can be told about new events (PostgreSQL's LISTEN/NOTIFY) offers
`store.wait_for_events(after_position, timeout) -> bool`; every other backend is polled through
`head_position()`. Subscriptions and group members call only `wait_for_new_events`, so a backend
gaining notifications speeds them all up without any change here or there.
"""

from __future__ import annotations

import time
from typing import Final, Protocol, runtime_checkable

from chronik.store import EventStore

DEFAULT_POLL_INTERVAL: Final = 0.05


@runtime_checkable
class NotifyingStore(Protocol):
    def wait_for_events(self, after_position: int, timeout: float) -> bool: ...


def wait_for_new_events(
    store: EventStore, after_position: int, timeout: float, *, poll_interval: float = DEFAULT_POLL_INTERVAL
) -> bool:
    """True as soon as an event above `after_position` is readable; False when `timeout` runs out.

    A False is not an error: callers use the timeout to do their periodic work (heartbeats).
    """
    if isinstance(store, NotifyingStore):
        return store.wait_for_events(after_position, timeout)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        if store.head_position() > after_position:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(poll_interval, remaining))
