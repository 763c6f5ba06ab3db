"""Optimistic concurrency across processes on PostgreSQL: one winner per version, whatever the race."""

from __future__ import annotations

import multiprocessing

import pytest

from chronik import open_store
from tests.contract.test_concurrency import _racing_process

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_sixteen_processes_race_at_one_expected_version(pg_url: str) -> None:
    open_store(pg_url).close()  # create the schema once, before the race
    context = multiprocessing.get_context("spawn")
    rounds, processes = 8, 16
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_racing_process, args=(pg_url, rounds, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in range(rounds * processes)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    for round_number in range(rounds):
        this_round = sorted(o for r, o in outcomes if r == round_number)
        assert this_round == ["loss"] * (processes - 1) + ["win"], f"round {round_number}: {this_round}"
    store = open_store(pg_url)
    try:
        events = store.read_stream("race-1")
        assert [e.data["round"] for e in events] == list(range(rounds))
        assert [e.stream_version for e in events] == list(range(rounds))
    finally:
        store.close()
