"""Where the examples' process tests run: a SQLite file always, PostgreSQL too when it is configured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def process_store_urls() -> list[object]:
    """Parameters for `process_store_url`: "sqlite" and, when CHRONIK_TEST_POSTGRES_URL is set,
    "postgres" (marked `postgres`)."""
    urls: list[object] = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("CHRONIK_TEST_POSTGRES_URL"):
        urls.append(pytest.param("postgres", id="postgres", marks=pytest.mark.postgres))
    return urls


@pytest.fixture(params=process_store_urls())
def process_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL that worker processes can open: a SQLite file in `tmp_path`, or a PostgreSQL
    schema of this test's own, dropped afterwards.

    A schema of its own, not only fresh ids and group names in a shared one: a new consumer group
    starts at the beginning of the log, so a test's fresh `video-workers` group would take every
    video that any other run ever uploaded there (their blobs long gone) as its own work, and other
    runs' fresh groups would work on this test's videos (seen: a video with nine extra starts).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from tests.postgres_support import drop_schemas, new_schema_name, store_url

    base = os.environ["CHRONIK_TEST_POSTGRES_URL"]
    schema = new_schema_name()
    yield store_url(base, schema)
    drop_schemas(base, [schema])
