"""Schemathesis fuzzes every operation of the OpenAPI schema against a real uvicorn: no 5xx, ever.

Bounded for CI: at most 20 examples per operation, the examples and fuzzing phases, and a 60 s
budget for the whole run. The SSE subscription is left out (a fuzzed `timeout` keeps a connection
open for minutes); its own tests cover it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chronik.server.demo import seed_cart
from tests.server.conftest import ServerFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_no_operation_answers_with_a_server_error(make_server: ServerFactory, tmp_path: Path) -> None:
    live = make_server()
    seed_cart(live.store)
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    result = subprocess.run(
        [
            executable,
            "run",
            f"{live.url}/api/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "20",
            "--phases",
            "examples,fuzzing",
            "--max-time",
            "60",
            "--exclude-path",
            "/api/log/subscribe",
            "--seed",
            "20261126",
            "--request-timeout",
            "10",
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
    )
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "passed" in result.stdout and "failed" not in result.stdout.lower().split("summary")[-1], report
