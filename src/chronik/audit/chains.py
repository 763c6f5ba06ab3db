"""Checking the per-stream hash chains (`chronik.events.chain`) while the log is walked in global order.

A stream's chain runs in *version* order: each event's hash covers its predecessor's, version
v - 1. The walk that feeds it (`verify`, `seal`) is in *global* order, because the seals fold
the log in that order. The two orders agree in a sound log (the store contract: within a
stream, global order is version order), and then every event is checked as it passes, at no
extra cost.

When a stream's versions do not come in order (a version skipped, or a lower version after a
higher one), the walk cannot yet tell a deletion from a reordering: the skipped version may
simply come later. So that stream is set aside and, after the walk, read again in version order
(`Dialect.stream_chain_rows`), where the two are told apart without guessing:

* **missing**: a version absent from the stream altogether: events were deleted. The event after
  the gap cannot be checked against its predecessor; the chain goes on from it.
* **reordered**: every version is there and the chain holds, but a version sits at a lower
  global position than its predecessor. Nothing was edited or deleted: the log breaks the
  contract's per-stream order (a store defect, or rows moved by hand). The same kind names
  `recorded_at` going back along the global order (the contract's time guarantee).
* **edited**: an event's stored text no longer matches its hash, checked in version order.

Both can be found in one stream (a deletion and a reordering): each is named at its own event.
A stream's *last* events deleted leave no gap behind them: only a seal over their range sees it.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from chronik.events.chain import GENESIS, event_hash
from chronik.projections.dialect import ChainRow, Dialect, SQLConnection

READ_BATCH = 5_000  # rows per page, in either order

ORDER_KINDS = frozenset({"reordered"})
"""Kinds that say the log's global order is wrong while every event is intact and present."""


class Break(msgspec.Struct, frozen=True):
    """One place where the log is not what was written.

    `kind`: "edited" (an event's hash does not match its stored text), "missing" (a version is
    absent from its stream: events deleted), "reordered" (a stream's versions, or the times, are
    out of global order: an ordering fault, no event changed), "seal" (a seal's range no longer
    folds to its hash: its position range is all we know), "seals" (the seal table itself was
    altered), "truncated" (sealed events at the end are gone), "signature" (a seal is unsigned or
    its signature does not verify), "expected-seal" (a seal the caller kept elsewhere is gone or
    differs).
    """

    kind: str
    detail: str
    position: int | None = None
    stream: str | None = None
    stream_version: int | None = None
    seal_no: int | None = None
    to_position: int | None = None  # the end of a seal's range

    def describe(self) -> str:
        place = []
        if self.stream is not None:
            place.append(f"stream {self.stream!r}")
        if self.stream_version is not None:
            place.append(f"version {self.stream_version}")
        if self.position is not None:
            place.append(f"position {self.position}")
        if self.seal_no is not None:
            place.append(f"seal #{self.seal_no}")
        return f"{self.kind} at {', '.join(place)}: {self.detail}"

    def sort_key(self) -> tuple[int, int]:
        """Earliest first; a seal's break counts at the end of its range, so a precise break inside
        that range (which names the stream and event) comes first."""
        at = self.to_position if self.to_position is not None else self.position
        return (at if at is not None else 2**62, 0 if self.stream else 1)


class _SetAside(msgspec.Struct):
    """A stream whose versions came out of order in the walk: checked in version order afterwards."""

    start: int | None  # the first version not yet checked, when the walk had checked its predecessor
    previous: tuple[str, int] | None  # (hash, position) of that predecessor
    low: int  # the lowest and highest versions the walk saw
    high: int


class ChainCheck:
    """Feed it the log's chain rows in global order (`check`), then call `finish` once.

    `breaks` holds what was found. Works on a part of the log too (`seal` walks only the
    unsealed tail): a stream's first event in the walk is then checked against its predecessor
    looked up by version.
    """

    def __init__(self, dialect: Dialect, connection: SQLConnection) -> None:
        self.dialect, self.connection = dialect, connection
        # stream -> (version, hash, position) of its last event checked in order
        self.tips: dict[str, tuple[int, str, int]] = {}
        self.set_aside: dict[str, _SetAside] = {}
        self.breaks: list[Break] = []
        self.last_recorded = ""
        self.last_position = 0

    @property
    def streams(self) -> int:
        return len(self.tips.keys() | self.set_aside.keys())

    def check(self, row: ChainRow) -> None:
        position, stream, version, recorded_at = row[0], row[2], row[3], row[6]
        if recorded_at < self.last_recorded:
            self.breaks.append(
                Break(
                    "reordered",
                    f"recorded at {recorded_at}, before the event at position {self.last_position} "
                    f"({self.last_recorded}): events are out of global order (moved by hand, or "
                    "stored out of order); the events themselves are intact",
                    position,
                    stream,
                    version,
                )
            )
        self.last_recorded, self.last_position = max(recorded_at, self.last_recorded), position
        aside = self.set_aside.get(stream)
        if aside is not None:
            aside.low, aside.high = min(aside.low, version), max(aside.high, version)
            return
        tip = self.tips.get(stream)
        if tip is not None:
            if version == tip[0] + 1:
                self._check_hash(row, tip[1])
            else:  # skipped or went back: tell which in version order, after the walk
                self.set_aside[stream] = _SetAside(tip[0] + 1, (tip[1], tip[2]), version, version)
            return
        if version == 0:
            self._check_hash(row, GENESIS)
            return
        before = self.dialect.stored_event(self.connection, stream, version - 1)
        if before is not None and before[0] < position:  # its predecessor precedes the walked range
            self._check_hash(row, before[1])
        else:
            self.set_aside[stream] = _SetAside(None, None, version, version)

    def _check_hash(self, row: ChainRow, previous: str) -> None:
        """Check one event against its predecessor's hash; it becomes its stream's tip either way."""
        position, event_id, stream, version, event_type, schema_version = row[:6]
        recorded_at, occurred_at, metadata, data, stored = row[6:]
        computed = event_hash(
            previous,
            event_id,
            stream,
            version,
            event_type,
            schema_version,
            recorded_at,
            occurred_at,
            metadata,
            data,
        )
        if computed != stored:
            self.breaks.append(
                Break(
                    "edited",
                    "the stored event does not match its hash (its data, metadata, type, times, id or "
                    "version were changed, or its predecessor's hash was rewritten)",
                    position,
                    stream,
                    version,
                )
            )
        self.tips[stream] = (version, stored, position)

    def finish(self) -> None:
        """Check every stream set aside, in version order; then drop repeated findings."""
        for stream, aside in self.set_aside.items():
            self._check_in_version_order(stream, aside)
        self.breaks = list(dict.fromkeys(self.breaks))

    def _check_in_version_order(self, stream: str, aside: _SetAside) -> None:
        # Start where the walk stopped checking, or lower if a lower version turned up later.
        start, previous = aside.start, aside.previous
        if start is None or aside.low < start:
            start = aside.low
            previous = (GENESIS, 0) if start == 0 else _swap(self._stored(stream, start - 1))
        expected = start
        for row in self._stream_rows(stream, start, aside.high):
            position, version = row[0], row[3]
            if previous is None or version != expected:
                # The first version's predecessor is absent, or versions were skipped.
                first_absent = start - 1 if previous is None else expected
                absent = (
                    f"version {first_absent} is"
                    if version - 1 <= first_absent
                    else f"versions {first_absent} to {version - 1} are"
                )
                self.breaks.append(
                    Break(
                        "missing",
                        f"{absent} absent from the stream: events were deleted (this event's link to "
                        "its predecessor cannot be checked)",
                        position,
                        stream,
                        version,
                    )
                )
            if previous is not None and position < previous[1]:
                self.breaks.append(
                    Break(
                        "reordered",
                        f"it precedes version {expected - 1} (at position {previous[1]}) in the global "
                        "order: the stream's versions are out of global order, an ordering fault of "
                        "the log (stored out of order, or rows moved by hand), not an edit or a deletion",
                        position,
                        stream,
                        version,
                    )
                )
            if previous is not None and version == expected:
                self._check_hash(row, previous[0])
            else:
                self.tips[stream] = (version, row[10], position)
            previous, expected = (row[10], position), version + 1

    def _stored(self, stream: str, version: int) -> tuple[int, str] | None:
        return self.dialect.stored_event(self.connection, stream, version)

    def _stream_rows(self, stream: str, start: int, high: int) -> Iterator[ChainRow]:
        version = start
        while version <= high:
            rows = self.dialect.stream_chain_rows(self.connection, stream, version, high, READ_BATCH)
            if not rows:
                return
            yield from rows
            version = rows[-1][3] + 1


def _swap(found: tuple[int, str] | None) -> tuple[str, int] | None:
    """(position, hash) as the dialect returns it, to (hash, position) as the chain keeps it."""
    return None if found is None else (found[1], found[0])
