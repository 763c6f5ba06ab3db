"""`verify` tells an ordering fault from a deletion, on both SQL stores.

A stream's chain is checked in version order, so a stream whose versions sit out of global order
(what PostgreSQL's concurrent writers could leave behind, or rows moved by hand) is "reordered",
with every hash intact, never "missing". A version absent from the stream is "missing". The
logs are made by real writer processes, or altered behind the store's back by raw SQL.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chronik import NewEvent
from chronik.audit import Break, TamperDetected, seal, verify
from chronik.cli.app import app
from chronik.clock import ManualClock
from chronik.events.envelope import ANY, STREAM_EXISTS
from chronik.store import EventStore, open_store
from tests.conftest import StoreFactory
from tests.raw_sql import log_positions, swap_positions, tamper

pytestmark = pytest.mark.sql_stores

runner = CliRunner()


@pytest.fixture
def store(store_factory: StoreFactory) -> EventStore:
    """Stream `s` (versions 0..5) interleaved with `t` in the global order; the clock stands still,
    as along PostgreSQL's transactions, so only the versions can show an order fault."""
    store = store_factory(clock=ManualClock())
    for version in range(6):
        store.append("s", [NewEvent(type="Noted", data={"n": version})])
        store.append("t", [NewEvent(type="Noted", data={"n": version})])
    return store


def s_position(store: EventStore, version: int) -> int:
    """Where version `version` of stream `s` is in the log now."""
    (position,) = [e.global_position for e in store.read_stream("s") if e.stream_version == version]
    return position


def found(store: EventStore) -> set[tuple[str, str | None, int | None]]:
    return {(b.kind, b.stream, b.stream_version) for b in verify(store, seal_after=False).breaks}


def chronik(store: EventStore, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--store", store.url])
    return result.exit_code, result.output


# -- an untouched log, written by concurrent writer processes ------------------------------------


def _writer(url: str, seconds: float, seed: int, start: multiprocessing.synchronize.Barrier) -> None:
    """Append batches of 1-3 events to two shared streams and one of its own, as `ANY` or `STREAM_EXISTS`."""
    store = open_store(url)
    rng = random.Random(seed)
    start.wait()
    deadline = time.monotonic() + seconds
    own = f"own-{seed}"
    store.append(own, [NewEvent(type="Opened", data={})])
    while time.monotonic() < deadline:
        stream = rng.choice(["shared-0", "shared-1", own])
        expected = STREAM_EXISTS if stream == own else ANY
        store.append(stream, [NewEvent(type="Moved", data={"by": seed})] * rng.randint(1, 3), expected)
    store.close()


def out_of_order_versions(store: EventStore) -> set[tuple[str, int]]:
    """Read independently of `verify`: every (stream, version) whose position is below its
    predecessor's. The versions themselves must be gap-free (no writer lost an event)."""
    positions: dict[str, dict[int, int]] = {}
    for event in store.read_all():
        positions.setdefault(event.stream, {})[event.stream_version] = event.global_position
    faults = set()
    for stream, by_version in positions.items():
        assert sorted(by_version) == list(range(len(by_version))), f"{stream} lost versions"
        faults |= {(stream, v) for v in range(1, len(by_version)) if by_version[v] < by_version[v - 1]}
    return faults


def test_an_untouched_log_of_concurrent_writers_is_never_called_tampered(store_factory: StoreFactory) -> None:
    store = store_factory()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    writers = [context.Process(target=_writer, args=(store.url, 2.0, seed, start)) for seed in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    # Every stream in order on every backend (issue 11's store fix): the untouched log verifies OK.
    assert out_of_order_versions(store) == set()
    report = verify(store, seal_after=False)
    assert report.breaks == [] and report.ok and not report.tampered
    code, output = chronik(store, "verify", "--no-seal")
    assert code == 0, output
    assert "TAMPERED" not in output and "deleted" not in output


# -- rows moved or deleted behind the store's back ------------------------------------------------


def test_versions_swapped_in_global_position_are_reordered_not_deleted(store: EventStore) -> None:
    swap_positions(store, s_position(store, 2), s_position(store, 3))
    report = verify(store, seal_after=False)
    assert [(b.kind, b.stream, b.stream_version) for b in report.breaks] == [("reordered", "s", 3)]
    (fault,) = report.breaks
    assert fault.position == s_position(store, 3)
    assert f"precedes version 2 (at position {s_position(store, 2)})" in fault.detail
    assert "not an edit or a deletion" in fault.detail
    assert not report.tampered


def test_a_reordered_log_is_sealed_as_it_is_and_stays_reported(store: EventStore) -> None:
    swap_positions(store, s_position(store, 1), s_position(store, 4))
    first = verify(store)  # an ordering fault does not stop the sealing: the events are intact
    assert not first.ok and not first.tampered and first.seals_added == 1
    # Sealed or not, the fault is in the log itself: every later verify names it again.
    again = verify(store, seal_after=False)
    assert {b.kind for b in again.breaks} == {"reordered"} and again.seals_verified == 1
    assert {(b.stream, b.stream_version) for b in again.breaks} == {("s", 2), ("s", 4)}


def test_a_reordering_in_the_unsealed_tail_is_sealed_by_seal_too(store: EventStore) -> None:
    seal(store, up_to=s_position(store, 2))  # versions 0..2 of s sealed
    swap_positions(store, s_position(store, 3), s_position(store, 5))  # both in the tail
    assert seal(store)  # no TamperDetected: nothing was edited or deleted
    # In version order: 3 (where 5 was), 4 before it, 5 (where 3 was) before 4.
    assert found(store) == {("reordered", "s", 4), ("reordered", "s", 5)}


def test_versions_moved_after_sealing_also_break_the_seal(store: EventStore) -> None:
    seal(store)
    swap_positions(store, s_position(store, 2), s_position(store, 3))
    report = verify(store, seal_after=False)
    assert {b.kind for b in report.breaks} == {"reordered", "seal"} and report.tampered


def test_a_deleted_middle_event_is_missing_not_reordered(store: EventStore) -> None:
    tamper(store, "DELETE FROM events WHERE stream_name = 's' AND stream_version = 2")
    report = verify(store, seal_after=False)
    assert [(b.kind, b.stream, b.stream_version) for b in report.breaks] == [("missing", "s", 3)]
    assert "version 2 is absent from the stream: events were deleted" in report.breaks[0].detail
    assert report.tampered
    with pytest.raises(TamperDetected, match="missing at stream 's', version 3"):
        seal(store)


def test_several_deleted_events_are_named_as_one_gap(store: EventStore) -> None:
    tamper(store, "DELETE FROM events WHERE stream_name = 's' AND stream_version IN (1, 2, 3)")
    (gap,) = verify(store, seal_after=False).breaks
    assert (gap.kind, gap.stream_version) == ("missing", 4)
    assert "versions 1 to 3 are absent" in gap.detail


def test_a_deleted_first_event_is_missing(store: EventStore) -> None:
    tamper(store, "DELETE FROM events WHERE stream_name = 's' AND stream_version = 0")
    (gap,) = verify(store, seal_after=False).breaks
    assert (gap.kind, gap.stream, gap.stream_version) == ("missing", "s", 1)
    assert "version 0 is absent" in gap.detail


def test_a_deletion_and_a_reordering_in_one_stream_are_each_named(store: EventStore) -> None:
    swap_positions(store, s_position(store, 3), s_position(store, 4))
    tamper(store, "DELETE FROM events WHERE stream_name = 's' AND stream_version = 1")
    assert found(store) == {("missing", "s", 2), ("reordered", "s", 4)}


def test_deleted_last_events_of_a_stream_are_caught_by_its_seal_only(store: EventStore) -> None:
    last = s_position(store, 5)
    tamper(store, "DELETE FROM events WHERE global_position = ?", last)
    assert verify(store, seal_after=False).ok  # no gap after it: the chain cannot see it (docs/AUDIT.md)
    store.append("s", [NewEvent(type="Noted", data={"n": 5})])  # version 5 again; sealed, then deleted
    store.append("t", [NewEvent(type="Noted", data={"n": 6})])  # (not the log's last: no "truncated")
    seal(store)
    tamper(store, "DELETE FROM events WHERE stream_name = 's' AND stream_version = 5")
    kinds = [b.kind for b in verify(store, seal_after=False).breaks]
    assert kinds == ["seal"]


# -- through the command line -----------------------------------------------------------------------


def test_the_cli_exits_3_for_an_ordering_fault_and_1_for_a_deletion(store: EventStore) -> None:
    swap_positions(store, s_position(store, 2), s_position(store, 3))
    code, output = chronik(store, "verify", "--no-seal")
    assert code == 3, output
    assert "OUT OF ORDER: 1 problem(s); the first: reordered at stream 's', version 3" in output
    assert "every event is present and unchanged" in output
    assert "TAMPERED" not in output and "deleted" not in output
    tamper(store, "DELETE FROM events WHERE stream_name = 's' AND stream_version = 1")
    code, output = chronik(store, "verify", "--no-seal")
    assert code == 1, output
    # The verdict's reason first, though the ordering fault is earlier in the log.
    assert "TAMPERED: 2 problem(s); the first: missing at stream 's', version 2" in output
    assert "also: reordered at stream 's', version 3" in output


def test_verify_in_a_real_process_names_a_reordering(store: EventStore, tmp_path: Path) -> None:
    swap_positions(store, s_position(store, 0), s_position(store, 5))
    done = subprocess.run(
        [sys.executable, "-m", "chronik", "verify", "--no-seal", "--store", store.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "reordered at stream 's', version 1" in done.stdout and "Traceback" not in done.stderr
    assert log_positions(store)  # the log is still readable as it is


def test_break_kinds_are_documented() -> None:
    """Every kind `verify` reports is explained where users look (Break's docstring, docs/AUDIT.md)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "AUDIT.md").read_text()
    for kind in (
        "edited",
        "missing",
        "reordered",
        "seal",
        "seals",
        "truncated",
        "signature",
        "expected-seal",
    ):
        assert f'"{kind}"' in (Break.__doc__ or "") and f"`{kind}`" in doc, kind
