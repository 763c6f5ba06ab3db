"""The client processes: writers appending a random workload, readers tailing the log.

Run by the harness as `python -m tests.history.clients writer|reader CONFIG_JSON`; they use only
the public store API, so they run unchanged against any backend a URL names. Everything they do
goes to their journal (`journal.py`) before and after each call.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chronik import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendRequest,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    StoreUnavailable,
    WrongExpectedVersion,
    open_store,
)
from chronik.store import EventStore
from tests.history.journal import ANY_MODE, EXISTS_MODE, NO_STREAM_MODE, Expected, Journal, dangling_attempt

SHARED_STREAMS = ("h-0", "h-1", "h-2")  # every writer appends to these: contention is the point
RETRY_PROBABILITY = 0.7  # how often an unknown outcome is retried with the same ids
MULTI_STREAM_PROBABILITY = 0.25
READ_PAGE = 500


def to_expected(expected: Expected) -> ExpectedVersion:
    if expected == ANY_MODE:
        return ANY
    if expected == EXISTS_MODE:
        return STREAM_EXISTS
    if expected == NO_STREAM_MODE:
        return NO_STREAM
    assert isinstance(expected, int)
    return expected


def open_until(url: str, deadline: float) -> EventStore:
    """Open the store, retrying while it is unavailable (a server restarting) until `deadline`."""
    while True:
        try:
            return open_store(url)
        except StoreUnavailable:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class Writer:
    """Appends random operations until `until`: single appends and multi-stream `append_many`,
    1-3 events each, every expectation mode, exact versions read just before the call."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.name: str = config["name"]
        self.until: float = config["until"]
        self.rng = random.Random(config["seed"])
        self.journal = Journal(Path(config["journal"]))
        self.resume: str | None = config.get("resume")
        self.sequence = itertools.count()
        self.store = open_until(config["url"], self.until + 30)

    def run(self) -> None:
        pending: dict[str, Any] | None = None
        if self.resume:  # a predecessor killed mid-call: sometimes retry its last call, same ids
            pending = dangling_attempt(Path(self.resume))
        while time.time() < self.until:
            if pending is not None and self.rng.random() < RETRY_PROBABILITY:
                kind, parts, retry_of = pending["kind"], pending["parts"], pending["op"]
            else:
                try:
                    kind, parts = self.new_operation()
                except StoreUnavailable:  # reading the version before an exact append
                    time.sleep(0.05)
                    continue
                retry_of = None
            pending = self.perform(kind, parts, retry_of)
            if pending is not None:
                time.sleep(self.rng.uniform(0, 0.05))
            elif self.rng.random() < 0.2:
                time.sleep(self.rng.uniform(0, 0.003))  # vary the interleavings a little
        self.store.close()
        self.journal.close()

    def new_operation(self) -> tuple[str, list[dict[str, Any]]]:
        born = f"born-{int(time.time() * 4)}"  # writers race to create the same new stream
        pool = [*SHARED_STREAMS, born]
        count = self.rng.choice((2, 3)) if self.rng.random() < MULTI_STREAM_PROBABILITY else 1
        parts = []
        for stream in self.rng.sample(pool, count):
            expected, read = self.expectation(stream, is_new=stream == born)
            ids = [str(uuid.uuid4()) for _ in range(self.rng.randint(1, 3))]
            parts.append({"s": stream, "e": expected, "ids": ids, "read": read})
        return ("append_many" if count > 1 else "append"), parts

    def expectation(self, stream: str, *, is_new: bool) -> tuple[Expected, int | None]:
        """A mode for one part, and the version read just before when it is exact."""
        roll = self.rng.random()
        if is_new and roll < 0.6:
            return NO_STREAM_MODE, None
        if roll < 0.35:
            return ANY_MODE, None
        if roll < 0.5:
            return EXISTS_MODE, None
        if roll < 0.55:
            return NO_STREAM_MODE, None
        read = self.store.stream_version(stream)
        if read is None:
            return NO_STREAM_MODE, None
        if read > 0 and self.rng.random() < 0.1:
            return read - 1, read  # deliberately stale: a definite refusal
        return read, read

    def perform(
        self, kind: str, parts: Sequence[dict[str, Any]], retry_of: str | None
    ) -> dict[str, Any] | None:
        """Call the store once, journalling before and after; returns the invoke record when the
        outcome is unknown (a candidate for retry), else None."""
        op_id = f"{self.name}.{next(self.sequence)}"
        invoke: dict[str, Any] = {"k": "invoke", "op": op_id, "proc": self.name, "kind": kind}
        invoke.update(parts=list(parts), retry_of=retry_of)
        self.journal.write(invoke)
        requests = [
            AppendRequest(
                p["s"],
                [
                    NewEvent(type="Wrote", data={"i": i}, event_id=uuid.UUID(e))
                    for i, e in enumerate(p["ids"])
                ],
                to_expected(p["e"]),
            )
            for p in parts
        ]
        try:
            if kind == "append":
                only = requests[0]
                results: list[AppendResult] = [
                    self.store.append(only.stream, only.events, only.expected_version)
                ]
            else:
                results = self.store.append_many(requests)
        except WrongExpectedVersion as error:
            self.journal.write({"k": "fail", "op": op_id, "err": type(error).__name__, "msg": str(error)})
            return None
        except StoreUnavailable as error:
            self.journal.write({"k": "unknown", "op": op_id, "err": type(error).__name__, "msg": str(error)})
            return invoke
        except Exception as error:  # not allowed by the contract: journalled, and the checker reports it
            message = "".join(traceback.format_exception(error))[-2000:]
            self.journal.write({"k": "error", "op": op_id, "err": type(error).__name__, "msg": message})
            return invoke
        self.journal.write(
            {
                "k": "ok",
                "op": op_id,
                "res": [
                    {
                        "s": r.stream,
                        "v": r.stream_version,
                        "p": list(r.global_positions),
                        "again": r.already_recorded,
                    }
                    for r in results
                ],
            }
        )
        return None


def run_reader(config: dict[str, Any]) -> int:
    """Tail the whole log from position 0 with `read_all` and `wait_for_events`, journalling every
    event received, until the harness writes the final position to the drain file and it is reached."""
    journal = Journal(Path(config["journal"]))
    drain = Path(config["drain"])
    deadline: float = config["deadline"]
    store = open_until(config["url"], deadline)
    last: int | None = None
    while time.time() < deadline:
        try:
            page = store.read_all(0 if last is None else last + 1, limit=READ_PAGE)
        except StoreUnavailable as error:
            journal.write({"k": "retry", "err": type(error).__name__, "msg": str(error)})
            time.sleep(0.1)
            continue
        if page:
            journal.write(
                *(
                    {
                        "k": "seen",
                        "p": e.global_position,
                        "s": e.stream,
                        "v": e.stream_version,
                        "id": str(e.event_id),
                    }
                    for e in page
                )
            )
            last = page[-1].global_position
            continue
        if drain.exists():
            target = json.loads(drain.read_text())["position"]
            if target is None or (last is not None and last >= target):
                journal.write({"k": "done", "last": last})
                store.close()
                return 0
        try:
            store.wait_for_events(0 if last is None else last, 0.5)
        except StoreUnavailable:
            time.sleep(0.1)
    journal.write({"k": "timeout", "last": last})
    return 3


def main(argv: Sequence[str]) -> int:
    role, config = argv[0], json.loads(argv[1])
    if role == "writer":
        Writer(config).run()
        return 0
    if role == "reader":
        return run_reader(config)
    print(f"unknown role {role!r}: writer or reader", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
