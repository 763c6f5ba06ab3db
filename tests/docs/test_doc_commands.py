"""Every `chronik` command in the README and docs/ runs as written on the demo's data (issue #17.8).

Before: the README's time-travel example, `chronik state cart-<id> --as-of 2026-01-31T12:00:00Z`,
failed on every demo store (no cart existed yet then), and nothing ran the docs' commands.

The demo's data is made the way a reader makes it: `chronik serve --demo` in an empty folder,
stopped once its workers have parked the corrupt video (the docs retry it). Each command then
runs on a fresh copy of that folder (so one command's writes do not change another's data), with
the store as `./chronik.db` and as `./app.db` (docs/EXAMPLES.md names that one):

* a command with arguments or options runs as written (in-process, through the CLI's app) and
  must exit 0; its CAPITALISED placeholders (`VIDEO_ID`, `GROUP`, ...) become the demo's own
  values, and any other placeholder (`cart-<id>`) fails the test;
* a long-running one (`serve`, `worker`) is started, must come up, and must stop cleanly on
  SIGTERM (`serve` gets `--port 0`: port 8000 may be taken on a shared machine);
* a synopsis (`[--json]`, `NAME...`, `a|b`) and a bare command name in prose (`chronik state`)
  must name a command that exists: its `--help` exits 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from chronik.cli.app import app
from chronik.store import open_store
from tests.server.test_demo import wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHRONIK = re.compile(r"^(?:\.venv/bin/)?chronik(?=\s|$)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
LONG_RUNNING = {("serve",), ("worker",), ("projections", "run")}
SYNOPSIS_MARKS = ("[", "|", "...", "…")
PLACEHOLDER = re.compile(r"<[^>]*>|^[A-Z][A-Z0-9_]+$")
SCRIPT = Path(sys.executable).with_name("chronik")
STOPPED = (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled, once it has shut down cleanly
runner = CliRunner()


@dataclass(frozen=True)
class DocCommand:
    text: str
    where: str


def doc_commands() -> list[DocCommand]:
    """Each distinct `chronik ...` command of the docs: fenced lines (also after `&&`) and inline code."""
    found: dict[str, str] = {}  # the command, without a `.venv/bin/` before it -> where it is first
    for document in DOCUMENTS:
        text = document.read_text()
        name = document.relative_to(ROOT).as_posix()
        candidates = []
        for block in FENCE.finditer(text):
            for line in block.group(1).splitlines():
                candidates += [part.strip() for part in line.split("&&")]
        candidates += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", FENCE.sub("", text))]
        for candidate in candidates:
            command = re.split(r"\s+#\s", candidate.removeprefix("$ "))[0].strip()
            if CHRONIK.match(command):
                found.setdefault(command.removeprefix(".venv/bin/"), name)
    return [DocCommand(text, where) for text, where in found.items()]


COMMANDS = doc_commands()


def split(command: str) -> tuple[tuple[str, ...], list[str]]:
    """(the subcommand words, the arguments) of a `chronik ...` line."""
    words = shlex.split(CHRONIK.sub("", command, count=1))
    node: Any = typer.main.get_command(app)
    path: list[str] = []
    while words and words[0] in getattr(node, "commands", {}):
        node = node.commands[words[0]]
        path.append(words.pop(0))
    return tuple(path), words


def requires_arguments(path: tuple[str, ...]) -> bool:
    node: Any = typer.main.get_command(app)
    for word in path:
        node = node.commands[word]
    return any(param.required for param in node.params)


# -- the demo's data ------------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CHRONIK_STORE"}
    env["COLUMNS"] = "200"
    return env


def parked_video(folder: Path) -> str | None:
    with open_store(f"sqlite:///{folder / 'chronik.db'}") as store:
        for info in store.list_streams(prefix="video-"):
            if store.read_stream(info.stream)[-1].type == "VideoParked":
                return info.stream.removeprefix("video-")
    return None


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder as `chronik serve --demo` leaves it (stopped with SIGTERM), and the values its
    placeholders stand for."""
    folder = tmp_path_factory.mktemp("demo-data")
    server = subprocess.Popen(
        [str(SCRIPT), "serve", "--demo", "--port", "0", "--log-level", "warning"],
        cwd=folder,
        env=clean_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        video = None
        while video is None:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the demo's workers did not park the corrupt video"
            time.sleep(0.5)
            if (folder / "chronik.db").exists():
                video = parked_video(folder)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    assert server.returncode in STOPPED
    yield (
        folder,
        {
            "VIDEO_ID": video,
            "CORRELATION_ID": "demo-rent-share",  # a demo transfer: its id is its correlation id
            "GROUP": "receipts",
            "NAME": "carts_by_status",
        },
    )


def fresh_copy(demo: Path, into: Path) -> Path:
    """The demo's folder again, its store also under the name docs/EXAMPLES.md uses (`app.db`)."""
    shutil.copytree(demo, into)
    for database in into.glob("chronik.db*"):
        shutil.copy(database, into / database.name.replace("chronik.db", "app.db"))
    return into


# -- the commands ---------------------------------------------------------------------------------


def substituted(words: list[str], values: dict[str, str], folder: Path) -> list[str]:
    out = []
    for word in words:
        if PLACEHOLDER.search(word):
            if word in MADE_ON_DEMAND:
                values = {**values, word: MADE_ON_DEMAND[word](folder)}
            assert word in values, f"placeholder {word!r}: no demo value stands for it; write a real one"
            word = values[word]
        out.append(word)
    return out


def create_key(folder: Path) -> str:
    made = runner.invoke(app, ["keys", "create", "docs-reader", "--scope", "read"])
    assert made.exit_code == 0, made.output
    return made.stdout.strip().split("_")[1]


def signing_key(folder: Path) -> str:
    """A seal-signing key pair in the folder (docs/AUDIT.md's `SIGNING_KEY`)."""
    path = folder / "seal-key.pem"
    if not path.exists():
        run_in_process(["keygen", str(path)])
    return str(path)


def verify_key(folder: Path) -> str:
    """The public key (`VERIFY_KEY`), after the demo's seals were signed with its private key, as
    docs/AUDIT.md tells a store sealed before signing was adopted."""
    private = signing_key(folder)
    run_in_process(["verify", "--signing-key", private])
    return f"{private}.pub"


def newest_seal(folder: Path) -> str:
    """The `N:HASH` that `chronik seal` prints (`NEWEST_SEAL`)."""
    result = runner.invoke(app, ["seal"], terminal_width=200)
    assert result.exit_code == 0, result.output
    found = re.search(r"(\d+:[0-9a-f]{16,})", result.output)
    assert found, result.output
    return found.group(1)


MADE_ON_DEMAND = {
    "KEY_ID": create_key,
    "SIGNING_KEY": signing_key,
    "VERIFY_KEY": verify_key,
    "NEWEST_SEAL": newest_seal,
}


def run_in_process(args: list[str]) -> None:
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output[-3000:]}"


def start_and_stop(path: tuple[str, ...], args: list[str], folder: Path) -> None:
    """Start a long-running command, see it come up, stop it with SIGTERM: it must exit 0."""
    if path == ("serve",):
        args = [*args, "--port", "0"]
    if path == ("worker",):  # the docs' handler module, as a user's project would have it
        (folder / "app").mkdir(exist_ok=True)
        (folder / "app" / "__init__.py").write_text("")
        (folder / "app" / "billing.py").write_text("def handle(event, uow):\n    pass\n")
    process = subprocess.Popen(
        [str(SCRIPT), *path, *args], cwd=folder, env=clean_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        if path == ("serve",):
            deadline = time.monotonic() + 60
            line = ""
            while not line.startswith("chronik serving"):  # after the log lines of the demo's start
                line = process.stderr.readline()
                assert line and time.monotonic() < deadline, "no 'chronik serving' line"
            url = line.split(" on ")[1].split(" ")[0].rstrip("/")

            def ready() -> bool:
                try:
                    return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                except httpx.TransportError:
                    assert process.poll() is None, "the server stopped"
                    return False

            wait_for(ready, timeout=60)
        else:
            time.sleep(3)
            assert process.poll() is None, process.communicate()[1][-3000:]  # it should still run
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=60)
    assert process.returncode in STOPPED, errors[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where}: {c.text}" for c in COMMANDS])
def test_a_documented_command_runs_on_the_demo_data(
    command: DocCommand,
    demo_data: tuple[Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo, values = demo_data
    folder = fresh_copy(demo, tmp_path / "demo")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("CHRONIK_STORE", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # `demo video` keeps its clips there
    path, words = split(command.text)
    if not path and words in (["--help"], ["--version"]):  # the command itself
        run_in_process(words)
        return
    assert path or not words, f"{command.text!r} names no chronik command"
    if any(mark in command.text for mark in SYNOPSIS_MARKS) or (
        not words and (not path or path in LONG_RUNNING or requires_arguments(path))
    ):
        run_in_process([*path, "--help"])  # a synopsis, or a command named in prose
    elif path in LONG_RUNNING:
        start_and_stop(path, substituted(words, values, folder), folder)
    else:
        run_in_process([*path, *substituted(words, values, folder)])


def test_the_docs_have_commands_of_every_kind() -> None:
    """The extraction finds what it is for (if it found nothing, every test above would pass)."""
    texts = {command.text for command in COMMANDS}
    assert "chronik serve --demo" in texts
    assert "chronik state cart-alice-1 --version 2" in texts
    assert any(text.startswith("chronik video retry VIDEO_ID --by ann") for text in texts)
    assert len(COMMANDS) > 30
