"""Group tests run on every backend that has a coordinator.

The store fixtures are parametrized over every backend in `tests/conftest.py`; a backend may join
them before it has a `GroupCoordinator` (`chronik.groups.<backend>`), so its group tests are
skipped, with the reason, until that module exists (memory, SQLite and PostgreSQL all have one).
"""

from __future__ import annotations

import importlib.util

import pytest

COORDINATOR_MODULES = {"memory": "chronik.groups.memory", "sqlite": "chronik.groups.sqlite"}


@pytest.fixture(autouse=True)
def _backend_has_a_coordinator(request: pytest.FixtureRequest) -> None:
    if "backend" not in request.fixturenames:
        return
    backend: str = request.getfixturevalue("backend")
    module = COORDINATOR_MODULES.get(backend, f"chronik.groups.{backend}")
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"consumer groups have no {backend} coordinator yet ({module})")
