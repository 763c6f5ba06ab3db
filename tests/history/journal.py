"""The history's records: what each client process invoked, what came back, what readers saw.

Every client process writes its own journal, one JSON object per line, with one `os.write` on a
file opened `O_APPEND` (no buffer in the process): a record is in the kernel's page cache the moment
the call returns, so it survives the process being SIGKILLed right after. A writer records
`invoke` *before* it calls the store and the outcome *after*, so an `invoke` with no outcome is a
call whose effect is unknown (the process died during it). A line cut short by the kill is
ignored (it can only be the last one, and its call had not started yet or its outcome is unknown
either way). No fsync: the journals must survive a killed process, not a lost machine.

Record kinds (`k`):
  writers: invoke {op, proc, kind, parts: [{s, e, ids, read}], retry_of}
           ok {op, res: [{s, v, p, again}]} / fail {op, err, msg} / unknown {op, err, msg}
           error {op, err, msg}  (an exception the contract does not allow: outcome unknown, and a violation)
  readers: seen {p, s, v, id} per event, retry {err, msg}, done {last}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Expected = str | int
"""An expectation as journalled: "any", "exists", "no_stream" or an exact version."""

ANY_MODE, EXISTS_MODE, NO_STREAM_MODE = "any", "exists", "no_stream"


class Journal:
    """An append-only JSON-lines file, one unbuffered write per record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, *records: dict[str, Any]) -> None:
        if records:
            os.write(self._fd, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode())

    def close(self) -> None:
        os.close(self._fd)


def load_journal(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal, in order (a last line cut short by a kill is dropped)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    if lines and lines[-1] != "":  # the write of the last record was interrupted
        lines = lines[:-1]
    records = []
    for line in lines:
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # only a torn last line can do this; keep what came before
                break
    return records


@dataclass(frozen=True)
class Part:
    """One stream's share of an operation: the events' ids in batch order and the expectation."""

    stream: str
    expected: Expected
    ids: tuple[str, ...]


@dataclass(frozen=True)
class PartResult:
    """What the store acknowledged for one part: the stream version after it and the positions."""

    stream: str
    version: int | None
    positions: tuple[int, ...]
    already_recorded: bool = False


@dataclass
class Attempt:
    """One call to `append` or `append_many`. A retry is a new attempt with the same parts and ids.

    `outcome` is "ok" (acknowledged), "failed" (a definite refusal: it wrote nothing) or "unknown"
    (no answer: connection lost, the process killed mid-call, or an error the contract does not
    allow, which `unexpected` marks).
    """

    op_id: str
    process: str
    kind: str
    parts: tuple[Part, ...]
    retry_of: str | None = None
    outcome: str = "unknown"
    error: str | None = None
    results: tuple[PartResult, ...] = ()
    unexpected: bool = False

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(event_id for part in self.parts for event_id in part.ids)


@dataclass(frozen=True)
class Seen:
    """One event as some read returned it."""

    position: int
    stream: str
    version: int
    event_id: str


@dataclass
class Observations:
    """Everything read at the end (from a fresh store object) and by the tailing readers meanwhile."""

    read_all: list[Seen]
    streams: dict[str, list[Seen]]  # read_stream, per stream ([] when the stream does not exist)
    stream_versions: dict[str, int | None]
    readers: dict[str, list[Seen]] = field(default_factory=dict)


def attempts_from(records: list[dict[str, Any]]) -> list[Attempt]:
    """A writer journal's attempts, in the order they were invoked."""
    attempts: dict[str, Attempt] = {}
    for record in records:
        kind = record["k"]
        if kind == "invoke":
            parts = tuple(Part(p["s"], p["e"], tuple(p["ids"])) for p in record["parts"])
            attempts[record["op"]] = Attempt(
                record["op"], record["proc"], record["kind"], parts, retry_of=record.get("retry_of")
            )
            continue
        attempt = attempts.get(record.get("op", ""))
        if attempt is None:
            continue
        if kind == "ok":
            attempt.outcome = "ok"
            attempt.results = tuple(
                PartResult(r["s"], r["v"], tuple(r["p"]), bool(r["again"])) for r in record["res"]
            )
        elif kind == "fail":
            attempt.outcome, attempt.error = "failed", record["err"]
        elif kind in ("unknown", "error"):
            attempt.outcome, attempt.error = "unknown", f"{record['err']}: {record['msg']}"
            attempt.unexpected = kind == "error"
    return list(attempts.values())


def seen_from(records: list[dict[str, Any]]) -> list[Seen]:
    """A reader journal's events, in the order the reader received them."""
    return [Seen(r["p"], r["s"], r["v"], r["id"]) for r in records if r["k"] == "seen"]


def dangling_attempt(path: Path) -> dict[str, Any] | None:
    """The last invoke of a journal if it has no outcome or an unknown one: what a restarted
    writer may retry with the same ids (the invoke record itself)."""
    last_invoke: dict[str, Any] | None = None
    for record in load_journal(path):
        if record["k"] == "invoke":
            last_invoke = record
        elif (
            last_invoke is not None
            and record.get("op") == last_invoke["op"]
            and record["k"] in ("ok", "fail")
        ):
            last_invoke = None
    return last_invoke
