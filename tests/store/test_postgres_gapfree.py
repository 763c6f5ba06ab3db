"""Gap-free tailing on PostgreSQL, proven with 8 writer processes against tailing readers.

The same race is run against a naive reader (ORDER BY global_position, no visibility barrier): it
must be caught skipping events, or this test would not show anything about the barrier.
"""

from __future__ import annotations

import itertools

import pytest

from chronik import open_store
from chronik.store.postgres import PostgresStore
from tests.store.postgres_race import check_tail, race

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_tailing_readers_see_every_committed_event_once_in_order_and_a_naive_one_skips(pg_url: str) -> None:
    safe = [open_store(pg_url), open_store(pg_url)]
    naive = open_store(pg_url)
    assert isinstance(naive, PostgresStore)
    naive.unsafe_no_read_barrier = True
    try:
        # Writers hold half of their transactions open a few ms after the insert: commit order then
        # differs from position order often, which is exactly the case the barrier is for.
        committed, seen = race(pg_url, writers=8, seconds=3.0, hold_ms=4, readers=[*safe, naive])
        # recorded_at, fixed with the position under concurrency, never decreases along the log.
        log = safe[0].read_all()
        assert len(log) == len(committed)
        assert all(a.recorded_at <= b.recorded_at for a, b in itertools.pairwise(log))
    finally:
        for store in [*safe, naive]:
            store.close()
    assert len(committed) > 200, f"only {len(committed)} events committed: the race proves little"
    for reader_seen in seen[:2]:
        result = check_tail(committed, reader_seen)
        assert (result.skipped, result.duplicated, result.out_of_order, result.phantom) == (0, 0, 0, 0)
        assert [position for _, position in reader_seen] == sorted(committed.values())
    naive_result = check_tail(committed, seen[2])
    assert naive_result.skipped >= 1, "the naive reader skipped nothing: the race is too gentle to prove much"
    assert naive_result.duplicated == 0
