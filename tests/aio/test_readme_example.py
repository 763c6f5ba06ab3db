"""The README's asyncio "twenty lines" run as written, twice in a row on one SQLite file."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_asyncio_example_runs_twice_and_prints_what_its_comments_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = README.read_text().split("### The same on asyncio", 1)[1]
    code = compile(section.split("```python", 1)[1].split("```", 1)[0], str(README), "exec")
    monkeypatch.chdir(tmp_path)
    outputs = []
    for _ in range(2):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code, {"__name__": "readme_example"})
        outputs.append(printed.getvalue().splitlines())
    assert outputs == [
        ["cart-42 is at version 0", "100 views"],
        ["cart-42 is at version 1", "200 views"],
    ]
