"""Faults, and the small description of a backend that the harness runs against.

A `Fault` does one bad thing to the running system and says whether it did (it may not apply at
that moment, e.g. no writer alive). The process faults here work on any backend; a backend adds
its own (`postgres_faults.py`: terminate connections, restart the server; a distributed backend
would add e.g. killing or partitioning a node) by listing them in its `Backend`.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tests.history.harness import Cluster


class Fault(Protocol):
    name: str

    def inject(self, cluster: Cluster, rng: random.Random) -> bool:
        """Do it once; False when it did not apply now (then it is not counted)."""
        ...


@dataclass
class Backend:
    """What the harness needs to know about a backend: the URL every process opens, and its faults.

    `weights` makes some faults more frequent than others (default 1 each). `cleanup` runs after
    the check (drop a schema, stop a server).
    """

    name: str
    url: str
    faults: Sequence[Fault]
    weights: Sequence[float] | None = None
    cleanup: Callable[[], None] = field(default=lambda: None)


@dataclass
class KillWriter:
    """SIGKILL a writer, wherever it is (mid-call included); the harness restarts it a moment later."""

    name: str = "kill"

    def inject(self, cluster: Cluster, rng: random.Random) -> bool:
        slot = cluster.random_live_writer(rng)
        if slot is None:
            return False
        slot.kill()
        return True


@dataclass
class PauseWriter:
    """SIGSTOP a writer for a while (holding whatever locks it holds), then SIGCONT it."""

    name: str = "stop"
    longest: float = 1.5

    def inject(self, cluster: Cluster, rng: random.Random) -> bool:
        slot = cluster.random_live_writer(rng)
        if slot is None:
            return False
        slot.signal(signal.SIGSTOP)
        try:
            time.sleep(rng.uniform(0.1, self.longest))
        finally:
            slot.signal(signal.SIGCONT)
        return True


PROCESS_FAULTS: tuple[Fault, ...] = (KillWriter(), PauseWriter())
