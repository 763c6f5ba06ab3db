"""PostgreSQL's per-stream global order, step by step: the one case a unit of work must refuse.

A unit of work takes its place in the global order (its transaction id) at its first write. If a
writer that took its place later appends to a stream first, this unit of work can no longer put
that stream's next versions after them: it must refuse (`WriteOrderConflict`, nothing written)
rather than write a higher version at a lower position. Declaring the streams first avoids it.
"""

from __future__ import annotations

import threading

import pytest

from chronik import NewEvent, WriteOrderConflict
from chronik.store.postgres import PostgresStore
from tests.contract.test_stream_order import order_breaks

pytestmark = pytest.mark.postgres


def test_a_unit_of_work_refuses_to_append_behind_a_later_writer(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = stores
    first.append("acct-b", NewEvent(type="Opened", data={}))
    with pytest.raises(WriteOrderConflict) as refused, first.transaction() as uow:
        uow.append("acct-a", NewEvent(type="Debited", data={}))  # position fixed here
        second.append("acct-b", NewEvent(type="Credited", data={"by": "second"}))  # a later id
        uow.append("acct-b", NewEvent(type="Credited", data={"by": "first"}))
    assert refused.value.stream == "acct-b"
    assert first.stream_version("acct-a") is None  # the whole unit of work was rolled back
    assert [e.data for e in first.read_stream("acct-b")] == [{}, {"by": "second"}]
    assert order_breaks(first.read_all()) == []


def test_declared_streams_are_locked_before_the_position_is_taken(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """With `lock_streams`, the later writer waits for this unit of work instead (so it is later)."""

    first, second = stores
    first.append("acct-b", NewEvent(type="Opened", data={}))
    waiting = threading.Event()
    done = threading.Event()

    def later_writer() -> None:
        waiting.set()
        second.append("acct-b", NewEvent(type="Credited", data={"by": "second"}))
        done.set()

    with first.transaction() as uow:
        uow.lock_streams(["acct-b", "acct-a"])
        writer = threading.Thread(target=later_writer)
        writer.start()
        waiting.wait(5)
        uow.append("acct-a", NewEvent(type="Debited", data={}))
        assert not done.wait(0.3)  # blocked on acct-b's lock
        uow.append("acct-b", NewEvent(type="Credited", data={"by": "first"}))
    writer.join(10)
    assert done.is_set()
    assert [e.data for e in first.read_stream("acct-b")] == [{}, {"by": "first"}, {"by": "second"}]
    assert order_breaks(first.read_all()) == []
