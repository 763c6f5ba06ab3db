"""Snapshots: a cache of an aggregate's state at one version, so loading need not replay everything.

A snapshot is only a cache. Deleting every snapshot changes no result, only speed; a snapshot of
another schema version is ignored; one that does not decode is logged and ignored (the loader falls
back to replaying the events). That is why saving one never fails the save of the events it follows.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final, Protocol

import msgspec

from chronik.domain.aggregate import Aggregate
from chronik.errors import InvalidInput
from chronik.store.contract import EventStore, Snapshot

logger: Final = logging.getLogger("chronik.snapshots")

_encode: Final = msgspec.json.Encoder().encode


class SnapshotPolicy(Protocol):
    def should_snapshot(self, previous_version: int | None, new_version: int) -> bool:
        """After a save moved a stream from `previous_version` to `new_version`, take a snapshot?"""
        ...


class EveryNEvents:
    """Snapshot whenever a save crosses a multiple of N events (a save of several events counts once)."""

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise InvalidInput(f"a snapshot interval must be an integer >= 1, not {n!r}")
        self.n = n

    def should_snapshot(self, previous_version: int | None, new_version: int) -> bool:
        before = 0 if previous_version is None else previous_version + 1  # events before the save
        return (new_version + 1) // self.n > before // self.n

    def __repr__(self) -> str:
        return f"EveryNEvents({self.n})"


class NeverSnapshot:
    def should_snapshot(self, previous_version: int | None, new_version: int) -> bool:
        return False


def policy_for(aggregate_class: type[Aggregate[Any]]) -> SnapshotPolicy:
    every = aggregate_class.snapshot_every
    return NeverSnapshot() if every is None else EveryNEvents(every)


def snapshot_of(aggregate: Aggregate[Any], recorded_at: datetime) -> Snapshot | None:
    """The aggregate's current state as a snapshot (None for an aggregate without events)."""
    cls = type(aggregate)
    if aggregate.version is None:
        return None
    return Snapshot(
        stream=aggregate.stream,
        stream_version=aggregate.version,
        aggregate_type=cls.__name__,
        schema_version=cls.snapshot_schema_version,
        json_state=_encode(aggregate.state).decode(),
        recorded_at=recorded_at,
    )


def snapshot_failed(aggregate: Aggregate[Any], error: Exception) -> None:
    """A snapshot is a cache: the events are already safe, so a failure to save one is only logged."""
    logger.warning(
        "could not save a snapshot of %s at version %s: %s", aggregate.stream, aggregate.version, error
    )


def take_snapshot(store: EventStore, aggregate: Aggregate[Any]) -> Snapshot | None:
    """Save the aggregate's current state as a snapshot; a failure is logged, never raised."""
    try:
        snapshot = snapshot_of(aggregate, store.clock())
        if snapshot is not None:
            store.save_snapshot(snapshot)
    except Exception as error:
        snapshot_failed(aggregate, error)
        return None
    return snapshot


class SnapshotReader:
    """Finds and decodes the latest usable snapshot for one aggregate class."""

    def __init__(self, aggregate_class: type[Aggregate[Any]]) -> None:
        self.aggregate_class = aggregate_class
        self._decode = msgspec.json.Decoder(aggregate_class.state_type).decode

    def load(self, store: EventStore, id: str, at_or_before: int | None) -> Any:
        """A fresh aggregate (of `aggregate_class`) restored from the snapshot, or None: replay instead."""
        stream = self.aggregate_class.stream_name(id)
        try:
            snapshot = store.load_snapshot(
                stream, schema_version=self.aggregate_class.snapshot_schema_version, at_or_before=at_or_before
            )
        except Exception as error:
            self.unreadable(stream, error)
            return None
        return self.restore(id, snapshot)

    def unreadable(self, stream: str, error: Exception) -> None:
        logger.warning("could not read a snapshot of %s (replaying instead): %s", stream, error)

    def restore(self, id: str, snapshot: Snapshot | None) -> Any:
        """The aggregate restored from a loaded snapshot, or None when there is none or it does not
        fit (another class, state that does not decode): replay instead."""
        cls = self.aggregate_class
        if snapshot is None:
            return None
        if snapshot.aggregate_type != cls.__name__:
            logger.warning(
                "snapshot of %s at version %s is of %s, not %s; replaying instead",
                snapshot.stream,
                snapshot.stream_version,
                snapshot.aggregate_type,
                cls.__name__,
            )
            return None
        try:
            state = self._decode(snapshot.json_state)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            logger.warning(
                "snapshot of %s at version %s does not decode (replaying instead): %s",
                snapshot.stream,
                snapshot.stream_version,
                error,
            )
            return None
        return cls(id, state=state, version=snapshot.stream_version)
