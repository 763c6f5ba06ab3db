"""Handlers that worker processes load by name (`tests.groups.handlers:apply`)."""

from __future__ import annotations

import os

from chronik import NewEvent, RecordedEvent
from chronik.store import UnitOfWork


def apply(event: RecordedEvent, uow: UnitOfWork) -> None:
    """The effect, in the checkpoint's unit of work: one Applied event per input, in order per stream."""
    uow.append(
        "applied-" + event.stream.partition("-")[2],
        NewEvent(
            type="Applied",
            data={"version": event.stream_version, "position": event.global_position, "pid": os.getpid()},
        ),
    )


def fail_on_poison(event: RecordedEvent, uow: UnitOfWork) -> None:
    """Fails for events whose data says so, until the environment variable FIXED is set."""
    if event.data.get("poison") and not os.environ.get("FIXED"):
        raise ValueError(f"poison at {event.stream}@{event.stream_version}")
    apply(event, uow)


def noop(event: RecordedEvent, uow: UnitOfWork) -> None:
    """The benchmark's trivial handler."""
