"""Shared by the PostgreSQL tests: real writer processes racing real tailing readers.

Every writer records what it committed (acknowledged appends only); every reader records what it
saw, in order. `check_tail` then compares the two: the proof of gap-free reading is that a reader
saw every committed event exactly once, in global order.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading
import time
import uuid
from dataclasses import dataclass

from chronik import NewEvent, open_store
from chronik.store import EventStore


@dataclass
class TailCheck:
    skipped: int  # committed, never seen
    duplicated: int  # seen more than once
    out_of_order: int  # seen after a higher position
    phantom: int  # seen but never acknowledged to a writer


def check_tail(committed: dict[str, int], seen: list[tuple[str, int]]) -> TailCheck:
    ids = [event_id for event_id, _ in seen]
    positions = [position for _, position in seen]
    return TailCheck(
        skipped=len(set(committed) - set(ids)),
        duplicated=len(ids) - len(set(ids)),
        out_of_order=sum(1 for a, b in itertools.pairwise(positions) if b <= a),
        phantom=len(set(ids) - set(committed)),
    )


def writer_process(
    url: str,
    seconds: float,
    hold_ms: float,
    streams: int,
    start: threading.Barrier,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """Append one event per transaction to random streams; with `hold_ms`, half of the transactions
    wait up to that long between their insert and their commit (what makes naive readers skip)."""
    store = open_store(url)
    rng = random.Random()
    committed: list[tuple[str, int]] = []
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event_id = uuid.uuid4()
        with store.transaction() as uow:
            result = uow.append(
                f"acct-{rng.randrange(streams)}", NewEvent(type="Moved", data={}, event_id=event_id)
            )
            if hold_ms and rng.random() < 0.5:
                time.sleep(rng.uniform(0, hold_ms) / 1000)
        committed.append((str(event_id), result.global_positions[0]))
    store.close()
    results.put(committed)


class Tailer(threading.Thread):
    """Tails the whole log from position 0 with `read_all(from_position=last + 1)`."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.seen: list[tuple[str, int]] = []
        self.writers_done = threading.Event()
        self.target = 0  # once the writers are done: the highest committed position
        self.drain_deadline = 0.0

    def run(self) -> None:
        last = 0
        while True:
            page = self.store.read_all(last + 1, limit=1000)
            if page:
                self.seen.extend((str(event.event_id), event.global_position) for event in page)
                last = page[-1].global_position
                continue
            if self.writers_done.is_set() and (last >= self.target or time.monotonic() > self.drain_deadline):
                return
            self.store.wait_for_events(last, 0.05)


def race(
    url: str, *, writers: int, seconds: float, hold_ms: float, readers: list[EventStore], streams: int = 40
) -> tuple[dict[str, int], list[list[tuple[str, int]]]]:
    """Run `writers` processes against `readers` (one tailing thread each); return what was
    committed and what each reader saw."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(writers + 1)
    results = context.Queue()
    processes = [
        context.Process(target=writer_process, args=(url, seconds, hold_ms, streams, start, results))
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    tailers = [Tailer(store) for store in readers]
    start.wait(timeout=120)
    for tailer in tailers:
        tailer.start()
    committed: dict[str, int] = {}
    for _ in processes:
        committed.update(results.get(timeout=seconds + 60))
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0, f"a writer failed with exit code {process.exitcode}"
    for tailer in tailers:
        tailer.target = max(committed.values(), default=0)
        tailer.drain_deadline = time.monotonic() + 20
        tailer.writers_done.set()
    for tailer in tailers:
        tailer.join(timeout=60)
        assert not tailer.is_alive()
    return committed, [tailer.seen for tailer in tailers]
