"""Errors of the projection layer; each carries the facts needed to act on it as attributes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chronik.errors import ChronikError, InvalidInput

if TYPE_CHECKING:
    from chronik.events.envelope import RecordedEvent


class ProjectionError(ChronikError):
    """A projection could not be built, run or queried."""


class InvalidProjection(InvalidInput):
    """A projection's declaration is wrong (its name, tables, schema or handlers); found before any write."""


class ProjectionNotFound(ChronikError, LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        shown = ", ".join(known) if known else "none are registered"
        super().__init__(f"no projection named {name!r} (known: {shown})")


class ProjectionTimeout(ProjectionError, TimeoutError):
    """`wait_until` gave up: the projection had not reached the position in time."""

    def __init__(self, name: str, wanted: int, reached: int, timeout: float) -> None:
        self.name = name
        self.wanted = wanted
        self.reached = reached
        self.timeout = timeout
        super().__init__(
            f"projection {name!r} did not reach position {wanted} within {timeout}s "
            f"(it is at position {reached}); is its runner running?"
        )


def describe_cause(error: BaseException) -> str:
    """The error's type and the first line of its message: a database's message can run to several
    lines (PostgreSQL's DETAIL), and the CLI prints one."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class ProjectionHandlerFailed(ProjectionError):
    """A handler raised (or its SQL failed) on one event; the batch it was in was rolled back.

    Names the projection, the event and the cause (chained as `__cause__`), so the operator knows
    what to fix without a traceback. `event` is None only when the failure could not be tied to
    one event (a batch failed, then passed when run again one statement at a time); `note` says
    what was kept (a rebuild's set is kept and resumable, a scratch set is dropped).
    """

    def __init__(
        self,
        name: str,
        event: RecordedEvent | None,
        error: BaseException,
        *,
        batch: tuple[int, int] | None = None,
        note: str = "",
    ) -> None:
        self.name = name
        self.event = event
        self.error = error
        self.batch = batch
        self.note = note
        if event is not None:
            where = (
                f"on event {event.type} (stream {event.stream!r}, version {event.stream_version}, "
                f"global position {event.global_position})"
            )
        else:
            first, last = batch or (0, 0)
            where = f"in the batch of events at global positions {first}..{last}"
        super().__init__(
            f"projection {name!r} failed {where}: {describe_cause(error)}" + (f"; {note}" if note else "")
        )

    def with_note(self, note: str) -> ProjectionHandlerFailed:
        """The same failure, saying what the caller kept or dropped (chained to the original cause)."""
        noted = ProjectionHandlerFailed(self.name, self.event, self.error, batch=self.batch, note=note)
        noted.__cause__ = self.error
        return noted


class ProjectionNotBuilt(ProjectionError):
    """The projection has no registry row in this store: nothing to compare, so nothing is created."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"projection {name!r} has never been built in this store; run `chronik projections run {name}` "
            "or `rebuild` first"
        )


class ProjectionMoved(ProjectionError):
    """Someone else advanced or swapped this projection while we were working; retry from the registry."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"projection {name!r} was advanced or swapped by another worker; retry")


class UnsupportedStore(ProjectionError):
    def __init__(self, store: object) -> None:
        self.store = store
        super().__init__(
            f"{store!r} has no SQL dialect for projections and seals (SQLite and PostgreSQL have "
            "one). Projections keep their tables in the store's database; the memory store keeps "
            "no hashes, so it has no tamper evidence to verify"
        )
