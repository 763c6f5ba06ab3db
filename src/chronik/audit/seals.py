"""Tamper evidence: per-stream hash chains, sealed into the global order, and their verification.

Two layers, each catching what the other cannot:

* **The chains** (computed at append, `chronik.events.chain`; checked by `chronik.audit.chains`):
  each event's hash covers its stored text and the previous event of its stream. Recomputing
  them, in each stream's version order, names the exact event that was edited, a version absent
  from its stream (deleted), and a stream whose versions are out of global order (reordered:
  every event intact, an ordering fault). They are per stream, so writers of different streams
  never wait on each other for them.
* **The seals** (this module, never on the append path): a seal folds the event hashes of a range
  of global positions, in global order, with each position, and chains to the previous seal. An
  edit whose attacker also rewrote the hashes after it, the deletion of a stream's last event,
  an event inserted or two events of different streams swapped in the global order: all change
  some seal. A seal names its range of positions; keep ranges small (`max_events`) to keep it
  precise.

What no check inside the database can catch is a rewrite of the seals themselves: deleting the
newest seals (their events are then merely "unsealed"), or forging seals that agree with forged
events. Two defences live outside the database: the newest seal's `N:HASH` (`anchor`), kept
elsewhere and passed back as `expected` (`chronik verify --expect-seal`), shows a seal deleted
or rewritten up to N; an Ed25519 signature on every seal (`chronik.audit.signing`) shows a seal
forged or altered by anyone without the private key. docs/AUDIT.md says what each leaves open.
Sealing runs on demand (`chronik seal`, e.g. from cron) and at the end of every `verify` that
found nothing worse than an ordering fault. Events appended since the last seal are covered by
their chains only.

The memory store keeps no hashes: it has no tamper evidence (nothing outlives its process).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import msgspec

from chronik.audit.chains import ORDER_KINDS, READ_BATCH, Break, ChainCheck
from chronik.audit.signing import SealSigner, SealVerifier
from chronik.errors import ChronikError
from chronik.events.envelope import format_timestamp
from chronik.projections.dialect import ChainRow, Dialect, SealRow, SQLConnection, dialect_for
from chronik.store.contract import EventStore

DEFAULT_SEAL_EVENTS: Final = 10_000
FIRST_SEAL_PREVIOUS: Final = ""
_SEAL_HASH: Final = re.compile(r"[0-9a-f]{64}")

__all__ = [  # Break is `chronik.audit.chains`'s, named here too beside what reports it
    "Break",
    "TamperDetected",
    "VerifyReport",
    "anchor",
    "newest_seal",
    "parse_anchor",
    "seal",
    "verify",
]

Progress = Callable[[int, int], None]
"""`progress(events_checked, events_total)` after each batch: counted in events, not positions."""


class TamperDetected(ChronikError):
    """Raised by `seal` when the range it would seal is already broken; `verify` reports instead."""

    def __init__(self, first: Break) -> None:
        self.first = first
        super().__init__(f"refusing to seal a broken log: {first.describe()}")


class VerifyReport(msgspec.Struct, frozen=True):
    events: int
    streams: int
    head: int
    seals_verified: int
    seals_added: int
    last_seal: SealRow | None
    breaks: list[Break]
    seals_signed: int = 0  # seals made unsigned, signed by this verify (`signer`)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def tampered(self) -> bool:
        """Whether some break is more than an ordering fault: an event edited, deleted or inserted,
        or the seals altered. False for a log whose only faults are events out of global order."""
        return any(found.kind not in ORDER_KINDS for found in self.breaks)

    @property
    def first_break(self) -> Break | None:
        return min(self.breaks, key=Break.sort_key) if self.breaks else None


def seal_digest(seal_no: int, from_position: int, previous_seal_hash: str) -> hashlib._Hash:
    """The running hash of one seal; fold events into it with `fold`, in global order."""
    digest = hashlib.sha256()
    digest.update(f"chronik-seal-1\n{seal_no}\n{from_position}\n{previous_seal_hash}\n".encode())
    return digest


def fold(digest: hashlib._Hash, position: int, stored_hash: str) -> None:
    # The position is folded with the hash: moving an event to another position changes the seal.
    digest.update(f"{position} {stored_hash}\n".encode())


def finish(digest: hashlib._Hash, to_position: int, event_count: int) -> str:
    digest.update(f"end {to_position} {event_count}\n".encode())
    return digest.hexdigest()


def anchor(seal_row: SealRow) -> str:
    """`N:HASH` of a seal: what to keep outside the database and pass back to `verify(expected=...)`."""
    return f"{seal_row.seal_no}:{seal_row.seal_hash}"


def parse_anchor(text: str) -> tuple[int, str]:
    """`N:HASH` (as `anchor` prints it) to (N, HASH); a clear error for anything else."""
    number, _, digest = text.strip().partition(":")
    if not number.isdecimal() or int(number) < 1 or not _SEAL_HASH.fullmatch(digest.lower()):
        raise ChronikError(
            f"expected seal {text!r} is not N:HASH (a seal number from 1, a colon and the seal's "
            "64 hex digits, as `chronik seal` prints it)"
        )
    return int(number), digest.lower()


def newest_seal(store: EventStore) -> SealRow | None:
    dialect = dialect_for(store)
    seals = dialect.seals(dialect.read_connection(store))
    return seals[-1] if seals else None


def verify(
    store: EventStore,
    *,
    seal_after: bool = True,
    max_events: int = DEFAULT_SEAL_EVENTS,
    progress: Progress | None = None,
    expected: Sequence[tuple[int, str]] = (),
    verifier: SealVerifier | None = None,
    signer: SealSigner | None = None,
) -> VerifyReport:
    """Recompute every chain and every seal in one pass over the log; then seal the tail if all is well.

    `expected`: seals (number, hash) kept outside the database (`anchor`); each must still be
    there with that hash. `verifier`: every seal must carry a signature one of its keys accepts.
    `signer`: the seals this verify adds are signed, and so are older unsigned seals it has just
    checked. Sealing happens unless `seal_after` is False or the report is `tampered` (ordering
    faults alone do not stop it: they stay visible in the log itself, sealed or not), and never
    unsigned where signatures are expected (a `verifier` given, or the newest seal signed): an
    unsigned seal there would fail the next check, so without a `signer` the tail stays unsealed.

    Reads only (in batches, never holding the write lock) until the optional sealing at the end.
    """
    if max_events < 1:
        raise ChronikError("max_events must be at least 1")
    dialect = dialect_for(store)
    connection = dialect.read_connection(store)
    head = store.head_position()
    seals = dialect.seals(connection)
    # Progress counts events (one count up front): positions are sparse on PostgreSQL.
    total = dialect.count_events(connection, 0, head) if progress is not None else 0
    if progress is not None:
        progress(0, total)  # before any batch: a bar starts its clock here
    chains = ChainCheck(dialect, connection)
    breaks: list[Break] = []
    _check_seal_table(seals, breaks)
    _check_expected(seals, expected, breaks)
    if verifier is not None:
        _check_signatures(seals, verifier, breaks)

    events = 0
    seal_index = 0
    digest = (
        seal_digest(seals[0].seal_no, seals[0].from_position, seals[0].previous_seal_hash) if seals else None
    )
    in_seal = 0
    sealed_to = seals[-1].to_position if seals else 0
    # The unsealed tail is sealed from this same pass (no second read), if everything checks out.
    tail = _SealBuilder(
        seals[-1].seal_no + 1 if seals else 1,
        sealed_to + 1,
        seals[-1].seal_hash if seals else FIRST_SEAL_PREVIOUS,
        max_events,
    )
    for rows in _chain_pages(dialect, connection, 1, head):
        for row in rows:
            chains.check(row)
            events += 1
            current = row[0]
            # Close every seal that ends before this event (it may have lost its last events).
            while seal_index < len(seals) and current > seals[seal_index].to_position:
                assert digest is not None
                _close_seal(seals[seal_index], digest, in_seal, breaks)
                seal_index += 1
                in_seal = 0
                digest = _open_next(seals, seal_index)
            if seal_index < len(seals) and digest is not None and current >= seals[seal_index].from_position:
                fold(digest, current, row[10])
                in_seal += 1
            elif current > sealed_to:
                tail.add(current, row[10])
        if progress is not None:
            progress(events, max(total, events))
    chains.finish()
    breaks.extend(chains.breaks)
    while seal_index < len(seals):
        assert digest is not None
        _close_seal(seals[seal_index], digest, in_seal, breaks)
        seal_index += 1
        in_seal = 0
        digest = _open_next(seals, seal_index)
    if sealed_to > head:
        breaks.append(
            Break(
                "truncated",
                f"the seals cover positions up to {sealed_to}, but the log ends at {head}: "
                "events at the end were deleted",
                head + 1,
            )
        )
    added: list[SealRow] = []
    signed: list[SealRow] = []
    signed_log = verifier is not None or bool(seals and seals[-1].signature is not None)
    may_seal = signer is not None or not signed_log
    if seal_after and may_seal and not any(found.kind not in ORDER_KINDS for found in breaks):
        added = tail.close()
        if signer is not None:
            added = [signer.sign(row) for row in added]
            signed = [signer.sign(row) for row in seals if row.signature is None]
        if added or signed:
            _insert(store, dialect, added, signed)
    all_seals = seals + added
    return VerifyReport(
        events=events,
        streams=chains.streams,
        head=head,
        seals_verified=len(seals),
        seals_added=len(added),
        last_seal=all_seals[-1] if all_seals else None,
        breaks=sorted(breaks, key=Break.sort_key),
        seals_signed=len(signed),
    )


def _open_next(seals: list[SealRow], index: int) -> hashlib._Hash | None:
    if index >= len(seals):
        return None
    return seal_digest(seals[index].seal_no, seals[index].from_position, seals[index].previous_seal_hash)


def _close_seal(seal_row: SealRow, digest: hashlib._Hash, count: int, breaks: list[Break]) -> None:
    if finish(digest, seal_row.to_position, count) != seal_row.seal_hash or count != seal_row.event_count:
        breaks.append(
            Break(
                "seal",
                f"positions {seal_row.from_position}..{seal_row.to_position} no longer fold to the seal's "
                f"hash ({count} events now, {seal_row.event_count} when sealed): an event in that range "
                "was edited, deleted, inserted or moved",
                seal_row.from_position,
                seal_no=seal_row.seal_no,
                to_position=seal_row.to_position,
            )
        )


def _check_seal_table(seals: list[SealRow], breaks: list[Break]) -> None:
    previous_hash, previous_to = FIRST_SEAL_PREVIOUS, 0
    for number, seal_row in enumerate(seals, start=1):
        if (
            seal_row.seal_no != number
            or seal_row.from_position != previous_to + 1
            or seal_row.previous_seal_hash != previous_hash
            or seal_row.to_position < seal_row.from_position
        ):
            breaks.append(
                Break(
                    "seals",
                    f"seal #{seal_row.seal_no} does not follow seal #{number - 1} "
                    "(numbers, ranges or chained hashes differ): the seal table was altered",
                    seal_row.from_position,
                    seal_no=seal_row.seal_no,
                )
            )
        previous_hash, previous_to = seal_row.seal_hash, seal_row.to_position


def _check_expected(seals: list[SealRow], expected: Sequence[tuple[int, str]], breaks: list[Break]) -> None:
    """Each seal kept outside the database must still be in the table, with the same hash.

    With `_check_seal_table` (every seal chains to the one before) and the fold of each range,
    an expected seal N anchors every seal and event up to the end of its range.
    """
    by_number = {row.seal_no: row for row in seals}
    newest = f"ends at seal #{seals[-1].seal_no}" if seals else "is empty"
    for number, digest in expected:
        found = by_number.get(number)
        if found is None:
            breaks.append(
                Break(
                    "expected-seal",
                    f"seal #{number} is not in the seal table (it {newest}): seals were deleted",
                    seal_no=number,
                )
            )
        elif found.seal_hash != digest:
            breaks.append(
                Break(
                    "expected-seal",
                    f"seal #{number} has hash {found.seal_hash}, not the expected {digest}: "
                    "the seals were rewritten (deleted and made again over changed or fewer events)",
                    found.from_position,
                    seal_no=number,
                    to_position=found.to_position,
                )
            )


def _check_signatures(seals: list[SealRow], verifier: SealVerifier, breaks: list[Break]) -> None:
    for seal_row in seals:
        problem = verifier.problem(seal_row)
        if problem is not None:
            breaks.append(
                Break(
                    "signature",
                    f"seal of positions {seal_row.from_position}..{seal_row.to_position}: {problem}",
                    seal_row.from_position,
                    seal_no=seal_row.seal_no,
                    to_position=seal_row.to_position,
                )
            )


def seal(
    store: EventStore,
    *,
    max_events: int = DEFAULT_SEAL_EVENTS,
    up_to: int | None = None,
    signer: SealSigner | None = None,
) -> list[SealRow]:
    """Seal every event not yet sealed, in ranges of at most `max_events` events; returns the new seals.

    The events are read and checked against their chains first (a range with an edited or
    deleted event raises `TamperDetected` instead of being sealed; events out of global order
    are sealed as they are, and `verify` keeps naming them); only the inserts take the write
    lock, briefly. `signer`: the new seals are signed (older ones are left as they are: signing
    those is `verify`'s, which checks them first). Once the newest seal is signed, sealing
    without a signer is refused: the unsigned seal would fail every `verify --verify-key`.
    """
    if max_events < 1:
        raise ChronikError("max_events must be at least 1")
    dialect = dialect_for(store)
    connection = dialect.read_connection(store)
    head = store.head_position() if up_to is None else up_to
    seals = dialect.seals(connection)
    if signer is None and seals and seals[-1].signature is not None:
        raise ChronikError(
            f"the newest seal (#{seals[-1].seal_no}) is signed: seal with the signing key too "
            "(an unsigned seal after it would fail every check of the signatures)"
        )
    previous_hash = seals[-1].seal_hash if seals else FIRST_SEAL_PREVIOUS
    next_no = (seals[-1].seal_no + 1) if seals else 1
    start = (seals[-1].to_position + 1) if seals else 1
    chains = ChainCheck(dialect, connection)
    builder = _SealBuilder(next_no, start, previous_hash, max_events)
    for rows in _chain_pages(dialect, connection, start, head):
        for row in rows:
            chains.check(row)
            builder.add(row[0], row[10])
    chains.finish()
    new = builder.close()
    broken = [found for found in chains.breaks if found.kind not in ORDER_KINDS]
    if broken:
        raise TamperDetected(min(broken, key=Break.sort_key))
    if signer is not None:
        new = [signer.sign(row) for row in new]
    if new:
        _insert(store, dialect, new, [])
    return new


def _chain_pages(
    dialect: Dialect, connection: SQLConnection, start: int, head: int
) -> Iterator[list[ChainRow]]:
    """The log's chain rows from `start` to `head`, in global order, a page of `READ_BATCH` at a time."""
    position = start
    while position <= head:
        rows = dialect.chain_rows(connection, position, head, READ_BATCH)
        if not rows:
            return
        yield rows
        position = rows[-1][0] + 1


class _SealBuilder:
    """Folds events, in global order, into consecutive seals of at most `max_events` events."""

    def __init__(self, next_no: int, start: int, previous_hash: str, max_events: int) -> None:
        self.next_no, self.first, self.previous_hash = next_no, start, previous_hash
        self.max_events = max_events
        self.digest = seal_digest(next_no, start, previous_hash)
        self.count = self.last = 0
        self.sealed: list[SealRow] = []

    def add(self, position: int, stored_hash: str) -> None:
        fold(self.digest, position, stored_hash)
        self.count, self.last = self.count + 1, position
        if self.count == self.max_events:
            self._seal()

    def _seal(self) -> None:
        digest = finish(self.digest, self.last, self.count)
        self.sealed.append(
            _seal_row(self.next_no, self.first, self.last, self.count, self.previous_hash, digest)
        )
        self.next_no, self.first, self.previous_hash = self.next_no + 1, self.last + 1, digest
        self.digest, self.count = seal_digest(self.next_no, self.first, self.previous_hash), 0

    def close(self) -> list[SealRow]:
        if self.count:
            self._seal()
        return self.sealed


def _seal_row(no: int, first: int, last: int, count: int, previous: str, digest: str) -> SealRow:
    from chronik.clock import system_clock

    return SealRow(no, first, last, count, previous, digest, format_timestamp(system_clock()))


def _insert(store: EventStore, dialect: Dialect, seals: list[SealRow], signed: list[SealRow]) -> None:
    """Add new seals, and signatures to existing unsigned ones, in one transaction."""
    with store.transaction() as uow:
        connection = dialect.write_connection(uow)
        dialect.ensure_seals(connection)
        existing = dialect.seals(connection)
        last_no = existing[-1].seal_no if existing else 0
        if (
            seals and last_no != seals[0].seal_no - 1
        ):  # another sealer won the race: ours builds on a stale seal
            raise ChronikError("another process sealed the log at the same time; run seal again")
        for seal_row in signed:
            assert seal_row.signature is not None
            if not dialect.sign_seal(connection, seal_row, seal_row.signature):
                raise ChronikError(
                    f"seal #{seal_row.seal_no} changed while it was verified; run verify again"
                )
        for seal_row in seals:
            dialect.insert_seal(connection, seal_row)
