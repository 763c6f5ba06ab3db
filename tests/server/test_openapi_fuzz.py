"""Schemathesis runs every check it has over every operation of the OpenAPI schema, the example
applications' included, against a real uvicorn that requires API keys: no 5xx, and the schema
says what the server does (status codes, content types, response schemas and headers, every
schema-valid request accepted, every schema-violating one refused, auth not ignored, `Allow`).

Bounded for CI: at most 25 examples per operation in each phase (examples, coverage, fuzzing,
stateful), one worker; the run takes about a minute. Settings beyond the command line (the live
subscription's stream) are in `schemathesis.toml` beside this file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chronik.server.demo import seed_bank, seed_cart
from chronik.server.keys import keyring_for
from tests.server.conftest import ServerFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CONFIG = Path(__file__).with_name("schemathesis.toml")


def schemathesis_command(url: str, token: str) -> list[str]:
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    return [
        executable,
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{url}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--seed",
        "20261126",
        "--request-timeout",
        "10",
        "--workers",
        "1",  # one thread: Python 3.11's ast module is not safe to use from several (hypothesis does)
    ]


def test_every_operation_conforms_to_the_schema(make_server: ServerFactory, tmp_path: Path) -> None:
    live = make_server()
    seed_cart(live.store)
    seed_bank(live.store)
    _, token = keyring_for(live.store).create("schemathesis", ["admin"], now=live.store.clock())
    live.state.forget_key_cache()
    result = subprocess.run(
        schemathesis_command(live.url, token), capture_output=True, text=True, timeout=400, cwd=tmp_path
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    operations = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    assert operations is not None and operations.group(1) == operations.group(2), report  # every one
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and tested.group(1) == operations.group(2), report
    summary = result.stdout.split("SUMMARY")[-1]
    assert re.search(r"\d+ generated, \d+ passed", summary) and "failed" not in summary, report
