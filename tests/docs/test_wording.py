"""What a user reads says things a user can know: no project jargon, no citations of files that are not there.

Issue #17.7: the README, the console ("The seed's shopping cart."), the CLI's help panel ("The
seed's examples") and docs/EXAMPLES.md spoke of "the seed", the notes the project started from,
which a user has never seen; EXAMPLES.md cited one of its files. The example applications are
called that. ("Seeding" demo data stays: that is the ordinary verb.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_help import every_help_page

ROOT = Path(__file__).resolve().parents[2]
JARGON = re.compile(r"\bthe seed\b|\bseed(?:'|\u2019)s\b", re.IGNORECASE)
TEXT_SUFFIXES = (".md", ".py", ".js", ".html", ".css", ".svg")


def user_facing_files() -> list[Path]:
    """The README, the docs, and everything the package ships: its docstrings, console and help."""
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted(p for p in (ROOT / "src" / "chronik").rglob("*") if p.suffix in TEXT_SUFFIXES),
    ]


def test_no_user_facing_text_speaks_of_the_seed() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in user_facing_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if JARGON.search(line)
    ]
    found += [
        f"{command} --help: {match.group(0)}"
        for command, text in every_help_page().items()
        for match in JARGON.finditer(" ".join(text.split()))
    ]
    assert found == []


def test_the_check_finds_the_phrases_it_is_for() -> None:
    """The pattern catches the old phrases and leaves the verb alone."""
    for phrase in ("The seed's shopping cart.", "The seed's examples", "the seed (notes.txt) sketches"):
        assert JARGON.search(phrase), phrase
    for phrase in ("`--demo` seeds the store", "seeding the demo data", "seed=7", "different for every seed"):
        assert not JARGON.search(phrase), phrase


def repository_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


@pytest.mark.parametrize(
    "document", ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
)
def test_the_docs_cite_only_files_that_exist(document: str) -> None:
    """A `file.ext` in backticks names a file of the repository (a full path, or a name found in it).

    Left out: patterns (`<name>`, `*`), URL paths (`/api/...`) and the benchmarks' outputs
    (`bench/results/`, written when a benchmark runs)."""
    files = repository_files()
    names = {Path(name).name for name in files}
    missing = []
    for match in re.finditer(
        r"`([^`\s]+\.(?:py|md|txt|toml|js|json|css|html|csv))`", (ROOT / document).read_text()
    ):
        cited = match.group(1)
        if any(mark in cited for mark in "<*") or cited.startswith(("/", "bench/results/")):
            continue
        if cited in files or cited in names or any(name.endswith("/" + cited) for name in files):
            continue
        missing.append(cited)
    assert missing == []
