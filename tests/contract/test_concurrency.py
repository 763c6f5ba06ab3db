"""Concurrency claims of the store contract, proven by a model and by real races."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronik import ANY, NO_STREAM, STREAM_EXISTS, DuplicateEventId, NewEvent, WrongExpectedVersion
from chronik.events.envelope import ExpectedVersion
from chronik.store import EventStore, open_store
from tests.conftest import StoreFactory

STREAMS = ["acct-a", "acct-b", "cart-c"]


@dataclass
class Model:
    """The simplest correct store: a list of event ids per stream, and where each id went."""

    streams: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    placed: dict[uuid.UUID, tuple[str, int]] = field(default_factory=dict)

    def version(self, stream: str) -> int | None:
        events = self.streams.get(stream)
        return len(events) - 1 if events else None

    def append(self, stream: str, ids: list[uuid.UUID], expected: ExpectedVersion) -> str:
        actual = self.version(stream)
        recorded = [self.placed.get(i) for i in ids]
        if ids and all(recorded):
            first = recorded[0]
            assert first is not None
            consecutive = all(r == (stream, first[1] + k) for k, r in enumerate(recorded))
            at_place = (
                expected in (ANY, STREAM_EXISTS)
                or (expected is NO_STREAM and first[1] == 0)
                or (isinstance(expected, int) and first[1] == expected + 1)
            )
            if consecutive and at_place:
                return "retry"
            return "duplicate"
        matches = (
            expected is ANY
            or (expected is NO_STREAM and actual is None)
            or (expected is STREAM_EXISTS and actual is not None)
            or expected == actual
        )
        if not matches:
            return "any-recorded" if any(recorded) else "conflict"
        if any(recorded):
            return "duplicate"
        for i in ids:
            self.placed[i] = (stream, len(self.streams.setdefault(stream, [])))
            self.streams[stream].append(i)
        return "ok"


expectations = st.one_of(
    st.sampled_from([ANY, NO_STREAM, STREAM_EXISTS]), st.integers(min_value=0, max_value=6)
)
operations = st.lists(
    st.tuples(
        st.sampled_from(STREAMS),
        expectations,
        st.integers(min_value=0, max_value=3),  # batch size
        st.integers(min_value=-1, max_value=20),  # >= 0: re-send an earlier batch (a writer's retry)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_store_behaves_like_the_model(
    store_factory: StoreFactory, ops: list[tuple[str, object, int, int]]
) -> None:
    store = store_factory()
    model = Model()
    sent: list[tuple[str, list[uuid.UUID], ExpectedVersion]] = []
    for stream, expected, size, resend in ops:
        assert not isinstance(expected, str)
        if resend >= 0 and sent:
            stream, ids, expected = sent[resend % len(sent)]
        else:
            ids = [uuid.uuid4() for _ in range(size)]
        sent.append((stream, ids, expected))  # type: ignore[arg-type]
        outcome = model.append(stream, ids, expected)  # type: ignore[arg-type]
        batch = [NewEvent(type="Op", data={"id": str(i)}, event_id=i) for i in ids]
        if outcome in ("ok", "retry"):
            result = store.append(stream, batch, expected)  # type: ignore[arg-type]
            assert result.already_recorded == (outcome == "retry" and bool(ids))
            if outcome == "retry":
                assert result.stream_version == model.placed[ids[-1]][1]
            else:
                assert result.stream_version == model.version(stream)
        elif outcome == "conflict":
            with pytest.raises(WrongExpectedVersion):
                store.append(stream, batch, expected)  # type: ignore[arg-type]
        else:  # a recorded id where this append may not put it
            with pytest.raises(DuplicateEventId):
                store.append(stream, batch, expected)  # type: ignore[arg-type]
        for name in STREAMS:
            assert store.stream_version(name) == model.version(name)
    for name, ids in model.streams.items():
        recorded = store.read_stream(name)
        assert [e.event_id for e in recorded] == ids
        assert [e.stream_version for e in recorded] == list(range(len(ids)))
    log = store.read_all()
    assert len(log) == sum(len(ids) for ids in model.streams.values())
    assert all(a.global_position < b.global_position for a, b in itertools.pairwise(log))


def _race_round(store: EventStore, threads: int, expected: ExpectedVersion) -> tuple[int, int]:
    barrier = threading.Barrier(threads)
    wins = 0
    losses = 0
    lock = threading.Lock()

    def writer(index: int) -> None:
        nonlocal wins, losses
        barrier.wait()
        try:
            store.append("race-1", NewEvent(type="Won", data={"writer": index}), expected)
            outcome = "win"
        except WrongExpectedVersion:
            outcome = "loss"
        with lock:
            if outcome == "win":
                wins += 1
            else:
                losses += 1

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return wins, losses


def test_sixteen_threads_race_at_one_expected_version(store: EventStore) -> None:
    rounds = 20
    for round_number in range(rounds):
        expected: ExpectedVersion = NO_STREAM if round_number == 0 else round_number - 1
        wins, losses = _race_round(store, 16, expected)
        assert (wins, losses) == (1, 15), f"round {round_number}: {wins} winners"
    events = store.read_stream("race-1")
    assert [e.stream_version for e in events] == list(range(rounds))


def _racing_process(
    url: str, rounds: int, barrier: threading.Barrier, results: multiprocessing.Queue
) -> None:
    store = open_store(url)
    for round_number in range(rounds):
        expected: ExpectedVersion = NO_STREAM if round_number == 0 else round_number - 1
        barrier.wait()
        try:
            store.append("race-1", NewEvent(type="Won", data={"round": round_number}), expected)
            results.put((round_number, "win"))
        except WrongExpectedVersion:
            results.put((round_number, "loss"))
        barrier.wait()  # everyone has tried before the next round starts
    store.close()


def test_four_processes_race_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    open_store(url).close()  # create the schema once
    context = multiprocessing.get_context("spawn")
    rounds, processes = 15, 4
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_racing_process, args=(url, rounds, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in range(rounds * processes)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    for round_number in range(rounds):
        this_round = [o for r, o in outcomes if r == round_number]
        assert sorted(this_round) == ["loss"] * 3 + ["win"], f"round {round_number}: {this_round}"
    store = open_store(url)
    assert [e.data["round"] for e in store.read_stream("race-1")] == list(range(rounds))
    store.close()
