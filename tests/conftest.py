"""Shared fixtures. `store_factory` is the one fixture every backend runs the contract suite through.

A backend joins the suite by adding a factory to `BACKENDS`; tests that need a server read its URL
from an environment variable and skip with the reason when it is absent, unless
CHRONIK_REQUIRE_SERVICES=1 (set by .ci/run), where a missing server fails the run instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronik.clock import Clock
from chronik.store import EventStore, open_store

StoreFactory = Callable[..., EventStore]

REQUIRE_SERVICES = os.environ.get("CHRONIK_REQUIRE_SERVICES") == "1"


def service_url(variable: str, what: str) -> str:
    """A test server's URL from the environment, or a skip (a failure if CHRONIK_REQUIRE_SERVICES=1)."""
    url = os.environ.get(variable)
    if not url:
        message = f"{what} tests need {variable} (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        if REQUIRE_SERVICES:
            pytest.fail(f"CHRONIK_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    return url


Opener = Callable[..., EventStore]
"""`opener(url, clock=None)`: how a factory opens a store: `open_store`, or the aio face's facade."""


def _memory(tmp_path: Path, request: pytest.FixtureRequest, opener: Opener = open_store) -> StoreFactory:
    def make(clock: Clock | None = None) -> EventStore:
        return opener("memory://", clock=clock)

    return make


def _sqlite(tmp_path: Path, request: pytest.FixtureRequest, opener: Opener = open_store) -> StoreFactory:
    counter = iter(range(1_000_000))

    def make(clock: Clock | None = None, *, shared: bool = False, query: str = "") -> EventStore:
        name = "shared.db" if shared else f"store-{next(counter)}.db"
        return opener(f"sqlite:///{tmp_path / name}{query}", clock=clock)

    return make


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest, Opener], StoreFactory]] = {
    "memory": _memory,
    "sqlite": _sqlite,
}

try:  # the PostgreSQL backend adds itself when present
    from tests.postgres_support import postgres_factory

    BACKENDS["postgres"] = postgres_factory
except ImportError:
    pass


def _backend_params(*, sql_only: bool = False) -> list[object]:
    params: list[object] = []
    for name in BACKENDS:
        if sql_only and name == "memory":
            continue
        marks = [pytest.mark.postgres] if name == "postgres" else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


CONTRACT_SUITE = Path(__file__).parent / "contract"
FACES = ("sync", "aio")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses `backend` runs once per backend; `@pytest.mark.sql_stores` limits it to
    the SQL ones (read models live in SQL tables), so no test is skipped for want of SQL.

    The contract suite (`tests/contract/`) runs on both faces of every backend as well: `sync`
    (`chronik.open_store`) and `aio` (`chronik.aio.open_store` behind `tests/aio_face.py`'s
    blocking facade), e.g. `[postgres-aio]`; `@pytest.mark.sync_face` keeps a contract test that
    uses the synchronous store's own API (its futures, its SQL connection) on the sync face."""
    if "backend" in metafunc.fixturenames:
        sql_only = metafunc.definition.get_closest_marker("sql_stores") is not None
        metafunc.parametrize("backend", _backend_params(sql_only=sql_only), indirect=True)
        if Path(metafunc.definition.path).is_relative_to(CONTRACT_SUITE):
            only_sync = metafunc.definition.get_closest_marker("sync_face") is not None
            metafunc.parametrize("face", ("sync",) if only_sync else FACES, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def face(request: pytest.FixtureRequest) -> str:
    """`sync` unless the test is parametrized over both faces (the contract suite)."""
    name: str = getattr(request, "param", "sync")
    return name


def _opener(face: str) -> Opener:
    if face == "sync":
        return open_store
    from tests.aio_face import BlockingFacade

    return BlockingFacade.open


@pytest.fixture
def store_factory(
    backend: str, face: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StoreFactory]:
    """Makes fresh, empty stores of the backend (and face) under test; closes them afterwards."""
    made: list[EventStore] = []
    factory = BACKENDS[backend](tmp_path, request, _opener(face))

    def make(*args: object, **kwargs: object) -> EventStore:
        store = factory(*args, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> EventStore:
    return store_factory()
