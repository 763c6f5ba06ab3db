"""Append observers (`EventStore.add_append_observer`), on every backend: each append a store object
makes is told once, with its outcome, after its unit of work commits or rolls back.

The server counts `chronik_appends_total` through one (issue #17.12: it used to count HTTP
appends only, 5 after about 900 events of the demo's workers).

On the synchronous face only: observers belong to the synchronous store object (the asyncio face
has none of its own yet; its threaded adapter's appends are told through the store it wraps).
"""

from __future__ import annotations

import pytest

from chronik import ANY, NO_STREAM, AppendRequest, EventStore, NewEvent, WrongExpectedVersion
from chronik.errors import InvalidStreamName

pytestmark = pytest.mark.sync_face


def ev(event_type: str = "Happened") -> NewEvent:
    return NewEvent(type=event_type, data={"n": 1})


class Told(list[tuple[str, int]]):
    def __call__(self, outcome: str, events: int, seconds: float) -> None:
        assert seconds >= 0
        self.append((outcome, events))


def test_every_append_is_told_once_with_its_outcome(store: EventStore) -> None:
    told = Told()
    remove = store.add_append_observer(told)
    first = store.append("obs-1", [ev(), ev()], NO_STREAM)
    store.append_many([AppendRequest("obs-2", [ev()], NO_STREAM), AppendRequest("obs-3", [ev()], NO_STREAM)])
    with pytest.raises(WrongExpectedVersion):
        store.append("obs-1", [ev()], 0)
    with pytest.raises(InvalidStreamName):
        store.append("bad name", [ev()], ANY)
    event = NewEvent(type="Happened", data={}, event_id=store.read_stream("obs-1")[0].event_id)
    retried = store.append("obs-1", [event], NO_STREAM)  # an acknowledged retry writes nothing
    assert retried.already_recorded and first.stream_version == 1
    assert told == [("ok", 2), ("ok", 1), ("ok", 1), ("conflict", 0), ("rejected", 0), ("ok", 0)]
    remove()
    store.append("obs-1", [ev()], ANY)
    assert len(told) == 6  # removed: told nothing more


def test_an_append_is_ok_only_once_its_unit_of_work_commits(store: EventStore) -> None:
    told = Told()
    store.add_append_observer(told)
    with pytest.raises(RuntimeError), store.transaction() as uow:
        uow.append("obs-9", [ev()], NO_STREAM)
        assert told == []  # not committed yet: not told
        raise RuntimeError("a later step of the unit of work fails")
    assert told == [("rolled_back", 0)]
    with store.transaction() as uow:
        uow.append("obs-9", [ev()], NO_STREAM)
        uow.append("obs-10", [ev(), ev(), ev()], NO_STREAM)
        uow.save_checkpoint("obs-reader", 1)
    assert told == [("rolled_back", 0), ("ok", 1), ("ok", 3)]
    assert [e.stream for e in store.read_all()] == ["obs-9", "obs-10", "obs-10", "obs-10"]


def test_an_observer_that_fails_fails_no_append(store: EventStore) -> None:
    def broken(outcome: str, events: int, seconds: float) -> None:
        raise RuntimeError("a broken metrics exporter")

    store.add_append_observer(broken)
    assert store.append("obs-5", [ev()], NO_STREAM).stream_version == 0
    assert store.stream_version("obs-5") == 0
