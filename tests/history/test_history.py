"""The fault-history checker on every backend: SQLite (a real WAL file), the shared PostgreSQL
(killed and stopped writers, terminated connections) and a PostgreSQL server of the test's own
(the same, plus server restarts). See `tests/history/__init__.py` for the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES, service_url
from tests.history.faults import PROCESS_FAULTS, Backend
from tests.history.harness import history_seconds, run_history
from tests.history.postgres_faults import OwnedPostgres, RestartServer, TerminateBackends

pytestmark = [pytest.mark.history, pytest.mark.slow, pytest.mark.timeout(history_seconds() + 240)]

# A client must not wait minutes for a server that is restarting: it gets StoreUnavailable (an
# unknown outcome, journalled) and goes on.
PG_CLIENT_OPTIONS = "&pool_timeout=5&connect_timeout=5"


def run_and_check(backend: Backend, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        report, summary = run_history(backend, workdir)
    finally:
        backend.cleanup()
    with capsys.disabled():
        print(f"\n{summary}")
    assert report.ok, f"{summary}\n{report.details()}\njournals: {workdir}"
    # The run must have exercised what it claims to check, or a pass proves nothing.
    assert report.stats["ok"] > 0 and report.stats["failed"] > 0, summary
    assert set(report.faults) == {fault.name for fault in backend.faults}, summary


def test_sqlite_history_under_process_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'history.db'}?busy_timeout=10", PROCESS_FAULTS)
    run_and_check(backend, tmp_path, capsys)


@pytest.mark.postgres
def test_postgres_history_under_process_faults_and_terminated_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.postgres_support import drop_schemas, new_schema_name, store_url

    base = service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")
    schema = new_schema_name()
    backend = Backend(
        "postgres",
        store_url(base, schema, PG_CLIENT_OPTIONS),
        (*PROCESS_FAULTS, TerminateBackends(base, schema)),
        cleanup=lambda: drop_schemas(base, [schema]),
    )
    run_and_check(backend, tmp_path, capsys)


@pytest.fixture
def owned_postgres() -> Iterator[OwnedPostgres]:
    """A throwaway PostgreSQL server (the shared one must never be restarted): skipped, or failed
    under CHRONIK_REQUIRE_SERVICES=1, when this machine cannot run one."""
    service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")  # PostgreSQL tests are wanted here at all
    missing = OwnedPostgres.cannot_run()
    if missing:
        message = f"the server-restart history needs a PostgreSQL server of its own: {missing}"
        if REQUIRE_SERVICES:
            pytest.fail(f"CHRONIK_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    server = OwnedPostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.postgres
def test_postgres_history_under_server_restarts(
    owned_postgres: OwnedPostgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = "history"
    backend = Backend(
        "postgres-restarts",
        f"{owned_postgres.url}?schema={schema}{PG_CLIENT_OPTIONS}",
        (*PROCESS_FAULTS, TerminateBackends(owned_postgres.url, schema), RestartServer(owned_postgres)),
        weights=(1.0, 1.0, 1.0, 0.8),
    )
    run_and_check(backend, tmp_path, capsys)
