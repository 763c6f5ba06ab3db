"""Subscriptions: durable readers of the log that catch up through history and then follow it live.

One reader per name. For many readers sharing the work of one log in per-stream order, see
`chronik.groups`.
"""

from chronik.subscriptions.catchup import CatchUpSubscription, Handler, StartFrom
from chronik.subscriptions.waiting import wait_for_new_events

__all__ = ["CatchUpSubscription", "Handler", "StartFrom", "wait_for_new_events"]
