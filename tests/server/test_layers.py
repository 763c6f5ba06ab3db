"""The server is the outermost layer: nothing below it imports it, or the web framework."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "chronik"
OUTER = ("server", "cli")
FORBIDDEN = ("chronik.server", "fastapi", "starlette", "uvicorn", "pydantic")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_inner_layers_never_import_the_server() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] in OUTER:
            continue
        for module in imported_modules(path):
            if any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN):
                offenders.append(f"{relative}: {module}")
    assert offenders == []


def test_the_cli_imports_the_server_only_when_serving() -> None:
    """`chronik append` must not pay for importing FastAPI: the serve module imports it lazily."""
    for path in sorted((SRC / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {
            node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
        } | {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        assert not any(m.startswith(("chronik.server", "fastapi", "uvicorn")) for m in top_level), path
