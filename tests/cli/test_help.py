"""What `chronik` says about itself: --version, every command's --help, one --store option everywhere,
and `serve` on a busy port (issue #17.11)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from chronik.cli.app import app
from tests.cli.test_subprocess import run_chronik

runner = CliRunner()


def command_tree(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group under `command` (typer's own click commands), with the words that call it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():  # a group
        yield from command_tree(sub, (*path, name))


def every_help_page() -> dict[str, str]:
    """`chronik ... --help` for every command and group, as a user's terminal shows it."""
    pages = {}
    for path, _ in command_tree(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        pages[" ".join(("chronik", *path))] = result.output
    return pages


def test_chronik_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"chronik {version('chronik')}\n"


def test_no_help_page_prints_a_type_beside_a_flag() -> None:
    """typer printed `--json  <bool>` and `--help  <bool>`: a flag takes no value to type."""
    pages = every_help_page()
    assert len(pages) > 30  # the walk reached the subcommands
    assert [command for command, text in pages.items() if "<bool>" in text] == []
    assert "<int range> [x>=0]" in pages["chronik read"]  # the types of options that take a value stay


def test_store_has_the_same_short_form_on_every_command() -> None:
    """`--store` was `-s` on `projections ...` only; now on every command that takes a store."""
    forms = {
        " ".join(path): tuple(sorted(param.opts))
        for path, command in command_tree(typer.main.get_command(app))
        for param in command.params
        if "--store" in param.opts
    }
    assert len(forms) > 25
    assert set(forms.values()) == {("--store", "-s")}, forms


def test_serve_on_a_busy_port_says_so_first_in_one_line_and_exits_1(tmp_path: Path) -> None:
    """It printed "chronik serving ..." (after seeding the demo) and then uvicorn's bind error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_chronik(
            "serve", "--demo", "--port", str(port), "--store", "sqlite:///app.db", cwd=tmp_path
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another server is using it: stop it or choose another --port)"
    ]
    assert not (tmp_path / "app.db").exists()  # nothing opened, nothing seeded


def test_serve_on_port_0_announces_the_port_it_took(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "chronik", "serve", "--port", "0", "--store", "memory://"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("chronik serving memory:// on http://127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        assert port != 0
        deadline = time.monotonic() + 20
        while True:  # uvicorn starts listening on the socket just after the line
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(10)
