"""Without Chromium the browser tests skip with the reason; under CHRONIK_REQUIRE_SERVICES=1 they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_browser_tests(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/server/test_console_browser.py",
        ],
        cwd=ROOT,
        env={**os.environ, "CHRONIK_CHROMIUM": "/nonexistent/chromium", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(150)
def test_missing_chromium_skips_with_the_reason() -> None:
    result = run_browser_tests(CHRONIK_REQUIRE_SERVICES="0")
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: nothing ran (all skipped)
    assert "skipped" in result.stdout
    assert "apt-get install -y chromium" in result.stdout


@pytest.mark.timeout(150)
def test_missing_chromium_fails_when_services_are_required() -> None:
    result = run_browser_tests(CHRONIK_REQUIRE_SERVICES="1")
    assert result.returncode != 0
    assert "CHRONIK_REQUIRE_SERVICES=1 but browser tests need" in result.stdout + result.stderr
