"""Per-stream order in the global log: within one stream, global order equals version order.

Whatever the expectation mode (`ANY`, `STREAM_EXISTS`, `NO_STREAM`, exact), for single appends,
batches, `append_many` across several streams and units of work that append to several streams,
with tailing readers running: a reader of `read_all` sees each stream's versions 0, 1, 2, ... in
that order. These races mix every mode on a few shared streams, from threads and from processes,
and check `read_all`, a tailing reader and `read_stream`.

On PostgreSQL before the fix (positions taken from the transaction id before the stream's lock),
`test_threads_race_every_mode_on_shared_streams` found versions out of global order in every run.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronik import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)
from chronik.errors import WriteOrderConflict
from chronik.events.envelope import ExpectedVersion
from chronik.store import EventStore, open_store
from chronik.store.contract import AppendRequest
from tests.conftest import StoreFactory

SHARED = ["order-a", "order-b", "order-c"]
MODES = ("any", "exists", "no-stream", "exact")


def order_breaks(events: Iterable[RecordedEvent]) -> list[str]:
    """Every place where a stream's next event in global order is not its next version."""
    last: dict[str, int] = {}
    breaks = []
    previous_position = -1
    for event in events:
        if event.global_position <= previous_position:
            breaks.append(f"position {event.global_position} after {previous_position}")
        previous_position = event.global_position
        expected = last.get(event.stream, -1) + 1
        if event.stream_version != expected:
            breaks.append(
                f"{event.stream}: version {event.stream_version} at position {event.global_position} "
                f"where version {expected} was due"
            )
        last[event.stream] = event.stream_version
    return breaks


def _expectation(store: EventStore, stream: str, mode: str) -> ExpectedVersion:
    if mode == "any":
        return ANY
    if mode == "exists":
        return STREAM_EXISTS
    if mode == "no-stream":
        return NO_STREAM
    version = store.stream_version(stream)
    return NO_STREAM if version is None else version


def _batch(rng: random.Random, writer: int) -> list[NewEvent]:
    return [NewEvent(type="Ordered", data={"writer": writer}) for _ in range(rng.randint(1, 3))]


@dataclass
class Tally:
    acknowledged: dict[uuid.UUID, tuple[str, int]] = field(default_factory=dict)  # id -> (stream, version)
    refused: int = 0

    def add(self, stream: str, events: list[NewEvent], last_version: int | None) -> None:
        assert last_version is not None
        first = last_version - len(events) + 1
        for offset, event in enumerate(events):
            assert event.event_id is not None
            self.acknowledged[event.event_id] = (stream, first + offset)


def _with_ids(events: list[NewEvent]) -> list[NewEvent]:
    return [NewEvent(type=e.type, data=e.data, event_id=uuid.uuid4()) for e in events]


def write_mixed(store: EventStore, writer: int, operations: int, seed: int) -> Tally:
    """One writer's share of the race: every mode, batches of 1-3, multi-stream appends and units
    of work over two streams. A refusal (wrong expected version, an order conflict of a unit of
    work) wrote nothing and is only counted."""
    rng = random.Random(seed)
    tally = Tally()
    for _ in range(operations):
        kind = rng.choice(("one", "one", "many", "unit"))
        try:
            if kind == "one":
                stream = rng.choice(SHARED)
                events = _with_ids(_batch(rng, writer))
                expected = _expectation(store, stream, rng.choice(MODES))
                result = store.append(stream, events, expected)
                tally.add(stream, events, result.stream_version)
            else:
                streams = rng.sample(SHARED, 2)
                batches = {s: _with_ids(_batch(rng, writer)) for s in streams}
                modes = {s: _expectation(store, s, rng.choice(MODES)) for s in streams}
                if kind == "many":
                    requests = [AppendRequest(s, batches[s], modes[s]) for s in streams]
                    results = store.append_many(requests)
                else:
                    with store.transaction() as uow:
                        # Declared first, or appended in name order: either way no deadlock.
                        if rng.random() < 0.5:
                            uow.lock_streams(streams)
                        else:
                            streams.sort()
                        results = [uow.append(s, batches[s], modes[s]) for s in streams]
                for result in results:
                    tally.add(result.stream, list(batches[result.stream]), result.stream_version)
        except (WrongExpectedVersion, WriteOrderConflict):
            tally.refused += 1
    return tally


def tail(store: EventStore, stop: threading.Event, seen: list[RecordedEvent]) -> None:
    """Follow the log from the start as a subscription does: read, then wait for more."""
    position = 0
    while True:
        page = store.read_all(position, limit=500)
        seen.extend(page)
        if page:
            position = page[-1].global_position + 1
        elif stop.is_set():
            return
        else:
            store.wait_for_events(position - 1, timeout=0.2)


def check_log(store: EventStore, tally: Tally, tailed: list[RecordedEvent]) -> None:
    log = store.read_all()
    assert order_breaks(log) == []
    assert order_breaks(tailed) == [], "a tailing reader saw a stream out of order"
    assert [e.event_id for e in tailed] == [e.event_id for e in log]
    recorded = {e.event_id: (e.stream, e.stream_version) for e in log}
    assert {i: recorded.get(i) for i in tally.acknowledged} == tally.acknowledged
    by_stream: dict[str, list[int]] = defaultdict(list)
    for event in log:
        by_stream[event.stream].append(event.global_position)
    for stream, positions in by_stream.items():
        read = store.read_stream(stream)
        assert [e.stream_version for e in read] == list(range(len(read)))
        assert [e.global_position for e in read] == positions


def test_threads_race_every_mode_on_shared_streams(store: EventStore) -> None:
    writers, operations = 8, 40
    stop = threading.Event()
    tailed: list[RecordedEvent] = []
    reader = threading.Thread(target=tail, args=(store, stop, tailed))
    reader.start()
    tallies: list[Tally] = []
    lock = threading.Lock()
    start = threading.Barrier(writers)

    def run(writer: int) -> None:
        start.wait()
        tally = write_mixed(store, writer, operations, seed=writer)
        with lock:
            tallies.append(tally)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    reader.join(timeout=30)
    assert len(tallies) == writers
    total = Tally()
    for tally in tallies:
        total.acknowledged.update(tally.acknowledged)
        total.refused += tally.refused
    assert len(total.acknowledged) > 100  # the race really wrote
    check_log(store, total, tailed)


def test_two_writers_append_to_one_stream_with_any(store: EventStore) -> None:
    """The issue's reproduction, in threads: `ANY` appends of 1-3 events to one stream."""
    start = threading.Barrier(2)

    def run(writer: int) -> None:
        start.wait()
        for n in range(150):
            store.append("race-1", [NewEvent(type="E", data={"n": n, "w": writer})] * (1 + n % 3))

    threads = [threading.Thread(target=run, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert order_breaks(store.read_all()) == []


def _process_writer(url: str, writer: int, operations: int, start: threading.Barrier, out: object) -> None:
    store = open_store(url)
    try:
        start.wait()
        tally = write_mixed(store, writer, operations, seed=100 + writer)
        out.put({str(i): place for i, place in tally.acknowledged.items()})  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.mark.sql_stores
@pytest.mark.slow
def test_processes_race_every_mode_on_shared_streams(store_factory: StoreFactory) -> None:
    store = store_factory(shared=True)
    url = store.url
    context = multiprocessing.get_context("spawn")
    processes, operations = 4, 40
    start = context.Barrier(processes)
    out = context.Queue()
    stop = threading.Event()
    tailed: list[RecordedEvent] = []
    reader = threading.Thread(target=tail, args=(store, stop, tailed))
    reader.start()
    workers = [
        context.Process(target=_process_writer, args=(url, w, operations, start, out))
        for w in range(processes)
    ]
    try:
        for worker in workers:
            worker.start()
        total = Tally()
        for _ in range(processes):
            for key, place in out.get(timeout=120).items():
                total.acknowledged[uuid.UUID(key)] = (place[0], place[1])
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
        stop.set()
        reader.join(timeout=30)
    assert len(total.acknowledged) > 50
    check_log(store, total, tailed)


# -- a model of several writers ------------------------------------------------------------------

writer_ops = st.lists(
    st.tuples(
        st.sampled_from(("one", "many", "unit")),
        st.lists(st.sampled_from(SHARED), min_size=1, max_size=2, unique=True),
        st.sampled_from(MODES),
        st.integers(min_value=1, max_value=3),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=st.lists(writer_ops, min_size=2, max_size=4))
def test_several_writers_keep_every_stream_in_order(
    store_factory: StoreFactory, plans: list[list[tuple[str, list[str], str, int]]]
) -> None:
    """Hypothesis plans what each of several concurrent writers does (every mode, `ANY` and
    `STREAM_EXISTS` included); whatever the interleaving, every acknowledged append is where its
    result says, each refusal wrote nothing, and every stream is in order in the log."""
    store = store_factory()
    tallies: list[Tally] = [Tally() for _ in plans]
    refused_ids: list[set[uuid.UUID]] = [set() for _ in plans]
    start = threading.Barrier(len(plans))

    def run(index: int) -> None:
        start.wait()
        for kind, streams, mode, size in plans[index]:
            batches = {
                s: [NewEvent(type="P", data={}, event_id=uuid.uuid4()) for _ in range(size)] for s in streams
            }
            try:
                modes = {s: _expectation(store, s, mode) for s in streams}
                if kind == "one" or len(streams) == 1:
                    results = [store.append(streams[0], batches[streams[0]], modes[streams[0]])]
                elif kind == "many":
                    results = store.append_many([AppendRequest(s, batches[s], modes[s]) for s in streams])
                else:
                    with store.transaction() as uow:
                        results = [uow.append(s, batches[s], modes[s]) for s in sorted(streams)]
                for result in results:
                    tallies[index].add(result.stream, batches[result.stream], result.stream_version)
            except (WrongExpectedVersion, WriteOrderConflict):
                refused_ids[index].update(e.event_id for b in batches.values() for e in b if e.event_id)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    log = store.read_all()
    assert order_breaks(log) == []
    recorded = {e.event_id: (e.stream, e.stream_version) for e in log}
    acknowledged: dict[uuid.UUID, tuple[str, int]] = {}
    for tally in tallies:
        acknowledged.update(tally.acknowledged)
    assert {i: recorded.get(i) for i in acknowledged} == acknowledged
    assert not set(recorded) & set(itertools.chain.from_iterable(refused_ids)), "a refused append wrote"
    assert set(recorded) == set(acknowledged)
