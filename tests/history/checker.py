"""The checker: is a recorded history one that the store contract allows?

Input: every writer attempt (`Attempt`, from the journals) and what was read (`Observations`).
A *write* is an attempt and its retries (linked by `retry_of`, same ids). Its status:
acknowledged if any attempt was ok; otherwise that of its last attempt: refused (a definite
refusal, which wrote nothing, and which a retry of an already recorded write would not have
given: it would have been acknowledged) or unknown.

Violations, by category (the counts are events or pairs, the examples say where):
  lost          an acknowledged event missing from `read_all` or from its stream's `read_stream`
  duplicated    an event id more than once in `read_all` or in a `read_stream`
  reordered     within one stream, a version after a higher one in `read_all`'s global order; or,
                in `read_stream`, a higher version at a lower position; or `read_all` not in
                increasing position
  gaps          a stream's versions not exactly 0, 1, 2, ... (missing or repeated versions)
  refused_present  an event of a refused write is in the log
  partial       a write (batch or `append_many`) only partly in the log
  misplaced     an acknowledged event not at the stream, version or position the store acknowledged
  expectation   a write recorded where its expectation did not allow (exact e: first version e+1,
                `NO_STREAM`: 0, `STREAM_EXISTS`: above 0), or its batch not at consecutive versions
  phantom       an event in the log that no writer sent
  disagree      `read_stream`, `stream_version` and `read_all` tell different stories of a stream
  unexpected_error  an append raised an error the contract does not allow
  reader_lost / reader_duplicated / reader_reordered / reader_phantom
                a tailing reader missed an event of the final log, got one twice, got positions
                out of order or a stream's versions out of order, or got one the log does not have
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tests.history.journal import ANY_MODE, EXISTS_MODE, NO_STREAM_MODE, Attempt, Observations, Part, Seen

CATEGORIES = (
    "lost",
    "duplicated",
    "reordered",
    "gaps",
    "refused_present",
    "partial",
    "misplaced",
    "expectation",
    "phantom",
    "disagree",
    "unexpected_error",
    "reader_lost",
    "reader_duplicated",
    "reader_reordered",
    "reader_phantom",
)
EXAMPLES_PER_CATEGORY = 5


@dataclass
class Write:
    """One logical write: its attempts in order (the first, then its retries)."""

    attempts: list[Attempt]

    @property
    def parts(self) -> tuple[Part, ...]:
        return self.attempts[0].parts

    @property
    def status(self) -> str:
        if any(a.outcome == "ok" for a in self.attempts):
            return "acknowledged"
        return "refused" if self.attempts[-1].outcome == "failed" else "unknown"


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    stats: Counter[str] = field(default_factory=Counter)
    process_errors: list[str] = field(default_factory=list)  # clients that died of something but our faults
    faults: Counter[str] = field(default_factory=Counter)  # injected, by name (the harness fills it in)

    def violation(self, category: str, message: str, count: int = 1) -> None:
        assert category in CATEGORIES, category
        self.counts[category] += count
        if len(self.examples[category]) < EXAMPLES_PER_CATEGORY:
            self.examples[category].append(message)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values()) and not self.process_errors

    def summary(self, **context: object) -> str:
        shown = " ".join(f"{key}={value}" for key, value in context.items())
        stats = " ".join(
            f"{key}={self.stats[key]}" for key in ("ops", "ok", "failed", "unknown", "retries", "events")
        )
        verdict = " ".join(f"{category}={self.counts[category]}" for category in CATEGORIES)
        return f"history: {shown} {stats} {verdict} process_errors={len(self.process_errors)}"

    def details(self) -> str:
        lines = []
        for category in CATEGORIES:
            if self.counts[category]:
                lines.append(f"{category} ({self.counts[category]}):")
                lines.extend(f"  - {example}" for example in self.examples[category])
        if self.process_errors:
            lines.append(f"process_errors ({len(self.process_errors)}):")
            lines.extend(f"  - {error}" for error in self.process_errors[:EXAMPLES_PER_CATEGORY])
        return "\n".join(lines)


def group_writes(attempts: Sequence[Attempt]) -> list[Write]:
    """Chain each retry to the attempt it retried; a retry of an unknown op id starts a write."""
    by_id = {attempt.op_id: attempt for attempt in attempts}
    root: dict[str, str] = {}
    writes: dict[str, Write] = {}
    for attempt in attempts:
        parent = attempt.retry_of
        key = root.get(parent, parent) if parent is not None and parent in by_id else attempt.op_id
        root[attempt.op_id] = key
        writes.setdefault(key, Write([])).attempts.append(attempt)
    return list(writes.values())


def check(attempts: Sequence[Attempt], seen: Observations) -> Report:
    report = Report()
    writes = group_writes(attempts)
    _count_stats(report, attempts, seen)
    for attempt in attempts:
        if attempt.unexpected:
            report.violation("unexpected_error", f"{attempt.op_id} raised {attempt.error}")
    in_log = _check_log(report, seen)
    _check_writes(report, writes, in_log, seen)
    _check_streams(report, seen)
    for name, received in sorted(seen.readers.items()):
        _check_reader(report, name, received, seen.read_all, in_log)
    return report


def _count_stats(report: Report, attempts: Sequence[Attempt], seen: Observations) -> None:
    report.stats["ops"] = len(attempts)
    for attempt in attempts:
        report.stats[attempt.outcome] += 1
        report.stats["retries"] += attempt.retry_of is not None
    report.stats["events"] = len(seen.read_all)


def _check_log(report: Report, seen: Observations) -> dict[str, Seen]:
    """`read_all` alone: positions increasing, no id twice, each stream's versions in order."""
    in_log: dict[str, Seen] = {}
    for before, after in itertools.pairwise(seen.read_all):
        if after.position <= before.position:
            report.violation("reordered", f"read_all: position {after.position} after {before.position}")
    for event in seen.read_all:
        if event.event_id in in_log:
            report.violation(
                "duplicated", f"read_all: {event.event_id} at {in_log[event.event_id]} and {event}"
            )
        else:
            in_log[event.event_id] = event
    for stream, events in _by_stream(seen.read_all).items():
        _check_versions(report, "read_all", stream, events, prefix="")
    return in_log


def _check_versions(report: Report, view: str, stream: str, events: Sequence[Seen], *, prefix: str) -> None:
    """One stream's events as a view returned them, in global order: versions 0, 1, 2, ..."""
    for before, after in itertools.pairwise(events):
        if after.version < before.version:
            report.violation(
                f"{prefix}reordered",
                f"{view}: stream {stream!r} version {after.version} (position {after.position}) comes after "
                f"version {before.version} (position {before.position})",
            )
    versions = Counter(event.version for event in events)
    expected = set(range(len(events)))
    missing = sorted(expected - set(versions))
    repeated = sorted(v for v, n in versions.items() if n > 1)
    if prefix == "" and (missing or repeated or set(versions) - expected):
        shown = f"missing {missing[:5]}" if missing else f"repeated {repeated[:5]}"
        report.violation(
            "gaps", f"{view}: stream {stream!r} has {len(events)} events, versions {shown}", len(missing) or 1
        )


def _check_writes(
    report: Report, writes: Sequence[Write], in_log: dict[str, Seen], seen: Observations
) -> None:
    in_streams = {e.event_id: e for events in seen.streams.values() for e in events}
    sent: set[str] = set()
    for write in writes:
        ids = [event_id for part in write.parts for event_id in part.ids]
        sent.update(ids)
        present = [event_id for event_id in ids if event_id in in_log]
        status = write.status
        if status == "acknowledged":
            for event_id in ids:
                if event_id not in in_log or event_id not in in_streams:
                    where = "read_all" if event_id not in in_log else "read_stream"
                    report.violation(
                        "lost", f"{write.attempts[0].op_id}: acknowledged {event_id} missing from {where}"
                    )
            _check_acknowledgement(report, write, in_log)
        elif status == "refused" and present:
            last = write.attempts[-1]
            report.violation(
                "refused_present",
                f"{last.op_id} was refused ({last.error}) but {present[0]} is at {in_log[present[0]]}",
                len(present),
            )
        elif status == "unknown" and present and len(present) != len(ids):
            report.violation(
                "partial",
                f"{write.attempts[0].op_id}: {len(present)} of its {len(ids)} events are in the log",
            )
        if present:
            _check_placement(report, write, in_log)
    for event in seen.read_all:
        if event.event_id not in sent:
            report.violation("phantom", f"read_all: {event} was never sent by a writer")


def _check_acknowledgement(report: Report, write: Write, in_log: dict[str, Seen]) -> None:
    """The log has each acknowledged event where the store said it put it."""
    ok = next(a for a in write.attempts if a.outcome == "ok")
    for part, result in zip(ok.parts, ok.results, strict=True):
        if result.version is None or len(result.positions) != len(part.ids):
            report.violation("misplaced", f"{ok.op_id}: acknowledgement {result} does not fit {part}")
            continue
        first_version = result.version - len(part.ids) + 1
        for index, (event_id, position) in enumerate(zip(part.ids, result.positions, strict=True)):
            event = in_log.get(event_id)
            acknowledged = Seen(position, part.stream, first_version + index, event_id)
            if event is not None and event != acknowledged:
                report.violation("misplaced", f"{ok.op_id}: acknowledged {acknowledged}, the log has {event}")


def _check_placement(report: Report, write: Write, in_log: dict[str, Seen]) -> None:
    """Each part's batch at consecutive versions of its stream, starting where its expectation allows."""
    op_id = write.attempts[0].op_id
    for part in write.parts:
        events = [in_log.get(event_id) for event_id in part.ids]
        found = [event for event in events if event is not None]
        if not found:
            continue
        first = found[0]
        if any(e.stream != part.stream for e in found) or [e.version for e in found] != list(
            range(first.version, first.version + len(found))
        ):
            report.violation("expectation", f"{op_id}: batch for {part.stream!r} recorded as {found}")
            continue
        allowed = (
            part.expected in (ANY_MODE,)
            or (part.expected == EXISTS_MODE and first.version > 0)
            or (part.expected == NO_STREAM_MODE and first.version == 0)
            or (isinstance(part.expected, int) and first.version == part.expected + 1)
        )
        if not allowed:
            report.violation(
                "expectation",
                f"{op_id}: expected {part.expected!r} on {part.stream!r} but recorded at {first}",
            )


def _check_streams(report: Report, seen: Observations) -> None:
    """`read_stream` and `stream_version` of every stream against each other and against `read_all`."""
    from_all = _by_stream(seen.read_all)
    for stream in sorted(set(seen.streams) | set(from_all)):
        events = seen.streams.get(stream, [])
        for before, after in itertools.pairwise(events):
            if after.position <= before.position:
                report.violation(
                    "reordered",
                    f"read_stream: {stream!r} version {after.version} is at position {after.position}, "
                    f"below version {before.version}'s {before.position}",
                )
        ids = Counter(event.event_id for event in events)
        for event_id, count in ids.items():
            if count > 1:
                report.violation(
                    "duplicated", f"read_stream: {stream!r} has {event_id} {count} times", count - 1
                )
        if [e.version for e in events] != list(range(len(events))):
            report.violation(
                "gaps", f"read_stream: {stream!r} versions {[e.version for e in events][:10]}..."
            )
        by_version = sorted(from_all.get(stream, []), key=lambda e: (e.version, e.position))
        if events != by_version:
            report.violation(
                "disagree",
                f"{stream!r}: read_stream has {len(events)} events, read_all {len(by_version)}; "
                f"first difference {_first_difference(events, by_version)}",
            )
        last = events[-1].version if events else None
        if stream in seen.stream_versions and seen.stream_versions[stream] != last:
            report.violation(
                "disagree",
                f"{stream!r}: stream_version says {seen.stream_versions[stream]}, read_stream ends at {last}",
            )


def _check_reader(
    report: Report, name: str, received: Sequence[Seen], final: Sequence[Seen], in_log: dict[str, Seen]
) -> None:
    """A tailing reader got every event of the final log once, in increasing position, streams in order."""
    for before, after in itertools.pairwise(received):
        if after.position <= before.position:
            report.violation("reader_reordered", f"{name}: position {after.position} after {before.position}")
    counts = Counter(event.event_id for event in received)
    for event_id, count in counts.items():
        if count > 1:
            report.violation("reader_duplicated", f"{name}: received {event_id} {count} times", count - 1)
    for event in received:
        if in_log.get(event.event_id) != event:
            report.violation(
                "reader_phantom", f"{name}: received {event}, the log has {in_log.get(event.event_id)}"
            )
    missing = [event for event in final if event.event_id not in counts]
    if missing:
        report.violation(
            "reader_lost", f"{name}: never received {missing[0]} (and {len(missing) - 1} more)", len(missing)
        )
    for stream, events in _by_stream(received).items():
        _check_versions(report, name, stream, events, prefix="reader_")


def _by_stream(events: Iterable[Seen]) -> dict[str, list[Seen]]:
    streams: dict[str, list[Seen]] = defaultdict(list)
    for event in events:
        streams[event.stream].append(event)
    return streams


def _first_difference(left: Sequence[Seen], right: Sequence[Seen]) -> str:
    for a, b in itertools.zip_longest(left, right):
        if a != b:
            return f"read_stream {a} vs read_all {b}"
    return "none"
