"""Where the examples' process tests run: a SQLite file always, PostgreSQL too when it is configured."""

from __future__ import annotations

import os

import pytest


def process_store_urls() -> list[object]:
    """Parameters for `url`: "sqlite" (the test makes a file in tmp_path) and, when
    CHRONIK_TEST_POSTGRES_URL is set, that server (marked `postgres`). The tests use fresh ids
    and group names, so a database shared with other tests is fine."""
    urls: list[object] = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("CHRONIK_TEST_POSTGRES_URL"):
        urls.append(
            pytest.param(os.environ["CHRONIK_TEST_POSTGRES_URL"], id="postgres", marks=pytest.mark.postgres)
        )
    return urls
