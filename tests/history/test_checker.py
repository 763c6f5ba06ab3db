"""The checker itself: a good hand-made history passes, and each kind of bad one is reported.

Without these a checker that never complains would look like a store that never fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.history.checker import Report, check
from tests.history.journal import (
    Attempt,
    Journal,
    Observations,
    Part,
    PartResult,
    Seen,
    attempts_from,
    dangling_attempt,
    load_journal,
)


def acked(
    op_id: str, stream: str, expected: str | int, ids: list[str], first: int, positions: list[int]
) -> Attempt:
    result = PartResult(stream, first + len(ids) - 1, tuple(positions))
    return Attempt(
        op_id, "w0", "append", (Part(stream, expected, tuple(ids)),), outcome="ok", results=(result,)
    )


def good_history() -> tuple[list[Attempt], list[Seen]]:
    """Two streams, a refused write, an unknown one that landed and one that did not, a retried one."""
    attempts = [
        acked("w0.0", "a", "no_stream", ["a0", "a1"], 0, [1, 2]),
        acked("w0.1", "b", "any", ["b0"], 0, [3]),
        Attempt(
            "w0.2", "w0", "append", (Part("a", 0, ("x0",)),), outcome="failed", error="WrongExpectedVersion"
        ),
        Attempt("w0.3", "w0", "append", (Part("a", "exists", ("a2",)),), outcome="unknown"),
        Attempt("w0.4", "w0", "append", (Part("b", "any", ("y0",)),), outcome="unknown"),
        Attempt("w0.5", "w0", "append", (Part("b", 0, ("b1", "b2")),), outcome="unknown"),
        replace(acked("w0.6", "b", 0, ["b1", "b2"], 1, [5, 6]), retry_of="w0.5"),
    ]
    log = [Seen(1, "a", 0, "a0"), Seen(2, "a", 1, "a1"), Seen(3, "b", 0, "b0"), Seen(4, "a", 2, "a2")]
    log += [Seen(5, "b", 1, "b1"), Seen(6, "b", 2, "b2")]
    return attempts, log


def observe(log: list[Seen], readers: dict[str, list[Seen]] | None = None) -> Observations:
    streams: dict[str, list[Seen]] = {}
    for event in sorted(log, key=lambda e: (e.version, e.position)):
        streams.setdefault(event.stream, []).append(event)
    versions: dict[str, int | None] = {name: events[-1].version for name, events in streams.items()}
    return Observations(log, streams, versions, readers if readers is not None else {"r0": list(log)})


def violations(report: Report) -> dict[str, int]:
    return {category: count for category, count in report.counts.items() if count}


def test_a_good_history_passes() -> None:
    attempts, log = good_history()
    report = check(attempts, observe(log))
    assert report.ok, report.details()
    assert report.stats["ops"] == 7 and report.stats["unknown"] == 3 and report.stats["retries"] == 1


def test_a_lost_acknowledged_event_is_reported() -> None:
    attempts, log = good_history()
    lost = [event for event in log if event.event_id != "b2"]  # the last of its stream: no gap either
    assert violations(check(attempts, observe(lost))) == {"lost": 1}


def test_a_duplicated_event_is_reported() -> None:
    attempts, log = good_history()
    twice = [*log, Seen(7, "b", 3, "b0")]
    report = check(attempts, observe(twice))
    assert report.counts["duplicated"] >= 1 and "b0" in report.details()


def test_a_stream_out_of_global_order_is_reported_in_every_view() -> None:
    """The PostgreSQL bug of issue 11: a stream's later version at a lower position."""
    attempts = [
        acked("w0.0", "s", "any", ["s0"], 0, [1]),
        acked("w0.1", "s", "any", ["s1"], 1, [3]),
        acked("w0.2", "s", "any", ["s2"], 2, [2]),
    ]
    log = [Seen(1, "s", 0, "s0"), Seen(2, "s", 2, "s2"), Seen(3, "s", 1, "s1")]
    report = check(attempts, observe(log))
    assert violations(report) == {
        "reordered": 2,
        "reader_reordered": 1,
    }  # read_all and read_stream; the reader
    assert "version 1 (position 3) comes after version 2 (position 2)" in report.details()


def test_a_gap_in_versions_is_reported() -> None:
    attempts, log = good_history()
    shifted = [replace(e, version=3) if e.event_id == "b2" else e for e in log]
    attempts[-1] = replace(attempts[-1], results=(PartResult("b", 3, (5, 6)),))
    report = check(attempts, observe(shifted))
    assert report.counts["gaps"] >= 1 and "missing [2]" in report.details()


def test_a_refused_write_in_the_log_is_reported() -> None:
    attempts, log = good_history()
    report = check(attempts, observe([*log, Seen(7, "a", 3, "x0")]))
    assert report.counts["refused_present"] == 1


def test_an_unknown_write_half_in_the_log_is_reported() -> None:
    attempts, log = good_history()
    attempts[3] = replace(attempts[3], parts=(Part("a", "exists", ("a2", "a3")),))
    assert "partial" in violations(check(attempts, observe(log)))


def test_an_acknowledgement_that_does_not_match_the_log_is_reported() -> None:
    attempts, log = good_history()
    attempts[1] = replace(attempts[1], results=(PartResult("b", 0, (9,)),))
    assert violations(check(attempts, observe(log))) == {"misplaced": 1}


def test_a_write_recorded_where_its_expectation_forbids_is_reported() -> None:
    attempts, log = good_history()
    attempts[0] = replace(attempts[0], parts=(Part("a", 5, ("a0", "a1")),))
    assert violations(check(attempts, observe(log))) == {"expectation": 1}


def test_an_event_nobody_sent_is_reported() -> None:
    attempts, log = good_history()
    assert violations(check(attempts, observe([*log, Seen(9, "c", 0, "ghost")]))) == {"phantom": 1}


def test_read_stream_disagreeing_with_read_all_is_reported() -> None:
    attempts, log = good_history()
    seen = observe(log)
    seen.stream_versions["a"] = 7
    assert violations(check(attempts, seen)) == {"disagree": 1}


@pytest.mark.parametrize(
    ("received", "category"),
    [
        (lambda log: log[:-1], "reader_lost"),
        (lambda log: [*log, log[-1]], "reader_duplicated"),
        (lambda log: [log[1], log[0], *log[2:]], "reader_reordered"),
        (lambda log: [*log, Seen(8, "b", 3, "nope")], "reader_phantom"),
    ],
)
def test_a_tailing_reader_that_missed_repeated_reordered_or_invented_an_event_is_reported(
    received: Callable[[list[Seen]], list[Seen]], category: str
) -> None:
    attempts, log = good_history()
    report = check(attempts, observe(log, {"r0": list(log), "r1": received(log)}))
    assert report.counts[category] >= 1 and "r1" in report.details()
    assert not report.ok


def test_an_error_the_contract_does_not_allow_is_reported() -> None:
    attempts, log = good_history()
    attempts[4] = replace(attempts[4], unexpected=True, error="UniqueViolation: duplicate key")
    assert violations(check(attempts, observe(log))) == {"unexpected_error": 1}


def test_the_journal_survives_a_torn_last_line_and_marks_a_call_without_outcome_unknown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w0.0.jsonl"
    journal = Journal(path)
    part = {"s": "a", "e": "any", "ids": ["i0"], "read": None}
    journal.write(
        {"k": "invoke", "op": "w0.0.0", "proc": "w0.0", "kind": "append", "parts": [part], "retry_of": None}
    )
    journal.write({"k": "ok", "op": "w0.0.0", "res": [{"s": "a", "v": 0, "p": [1], "again": False}]})
    journal.write(
        {"k": "invoke", "op": "w0.0.1", "proc": "w0.0", "kind": "append", "parts": [part], "retry_of": None}
    )
    journal.close()
    with path.open("a") as torn:
        torn.write('{"k":"ok","op":"w0.0.1","res":[{"s"')  # killed in the middle of a write
    attempts = attempts_from(load_journal(path))
    assert [(a.op_id, a.outcome) for a in attempts] == [("w0.0.0", "ok"), ("w0.0.1", "unknown")]
    dangling = dangling_attempt(path)
    assert dangling is not None and dangling["op"] == "w0.0.1"
