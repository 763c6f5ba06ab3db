"""Every Python snippet of the README runs as written, and again: a reader runs it twice (#17.13).

Before: the second run of "Twenty lines" and of "Domain model" failed with `WrongExpectedVersion`,
because their SQLite files were still there and both appended with `expected_version=NO_STREAM`.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from chronik.domain import EventCodec, Repository
from chronik.store import open_store

README = Path(__file__).resolve().parents[2] / "README.md"
SNIPPETS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def run(code: str) -> list[str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_snippet"})
    return printed.getvalue().splitlines()


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet-{n}" for n in range(1, len(SNIPPETS) + 1)])
def test_a_readme_snippet_runs_twice_in_a_row(
    code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = run(code)
    second = run(code)  # the same working directory: its files are still there
    assert first and second


def test_twenty_lines_prints_what_its_comments_say_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = README.read_text().split("## Twenty lines", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    first, second = run(code), run(code)
    assert first[:2] == ["0 False", "5 0"]
    assert second[:2] == ["0 True", "5 0"]  # the retry was acknowledged: written once
    assert first[2:] == second[2:] and first[-1] == "cart-42 ItemAdded"


def test_there_are_snippets_to_run() -> None:
    assert len(SNIPPETS) >= 2


def test_the_upcaster_sentence_says_where_the_codec_comes_from(tmp_path: Path) -> None:
    """It spoke of `codec.add_upcaster(...)` without a word on what `codec` is."""
    text = " ".join(README.read_text().split())
    assert "repository.codec.add_upcaster(" in text
    assert "codec = chronik.domain.EventCodec()" in text and "Repository(store, codec)" in text
    with open_store(f"sqlite:///{tmp_path / 'bank.db'}") as store:
        repository = Repository(store)
        assert isinstance(repository.codec, EventCodec)  # what the sentence says, as it says it
        repository.codec.add_upcaster("Deposited", 1, lambda data: {**data, "currency": "EUR"})
        shared = EventCodec()
        assert Repository(store, shared).codec is shared
