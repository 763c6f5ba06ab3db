"""Errors of the projection layer; each carries the facts needed to act on it as attributes."""

from __future__ import annotations

from chronik.errors import ChronikError, InvalidInput


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
