"""Inner layers never import outer ones (read from the import statements of each layer's modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "chronik"

# layer folder -> packages its modules must not import
FORBIDDEN = {
    "events": ("chronik.store", "chronik.domain", "chronik.aio", "chronik.cli", "chronik.examples"),
    "store": ("chronik.domain", "chronik.aio", "chronik.subscriptions", "chronik.cli", "chronik.examples"),
    "domain": ("chronik.aio", "chronik.cli", "chronik.examples"),
    "subscriptions": ("chronik.aio", "chronik.cli", "chronik.examples"),
    "groups": ("chronik.aio",),
    "projections": ("chronik.aio",),
    "audit": ("chronik.aio",),
    # The asyncio face builds on events, store, domain and subscriptions only.
    "aio": (
        "chronik.groups",
        "chronik.projections",
        "chronik.audit",
        "chronik.server",
        "chronik.cli",
        "chronik.examples",
    ),
    "examples": ("chronik.cli",),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("layer", "forbidden"), FORBIDDEN.items())
def test_a_layer_imports_nothing_outside_it(layer: str, forbidden: tuple[str, ...]) -> None:
    modules = sorted((SOURCE / layer).rglob("*.py"))
    assert modules, f"no modules found under {SOURCE / layer}"
    offending = {
        f"{path.relative_to(SOURCE)} imports {name}"
        for path in modules
        for name in imported_modules(path)
        if name.startswith(forbidden)
    }
    assert not offending


def test_the_check_would_catch_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from chronik.cli.app import app\nimport chronik.examples.cart\n")
    assert imported_modules(module) == {"chronik.cli.app", "chronik.examples.cart"}
