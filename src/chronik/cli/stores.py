"""Opening the store a command names: one way for every `chronik` command.

Why one place: a user's mistake must look the same whichever command made it. A command that
only reads (`read`, `history`, `groups status`, `video status`, ...) given a mistyped SQLite path
must say that no store is there, not create an empty file behind the user's back and report
"nothing found"; an unreachable server or a bad URL is one line on stderr and exit code 1, never
a traceback. Commands that write (`append`, the demos, `serve`, `worker`) may create the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape

from chronik.errors import ChronikError
from chronik.store import EventStore, default_store_url, open_store

err = Console(stderr=True, soft_wrap=True)

# The one `--store` option (with its short form `-s`) of every command but the demos'.
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        help="Store URL (memory://, sqlite:///path.db, postgresql://...). "
        "Default: $CHRONIK_STORE, else sqlite:///./chronik.db.",
        show_default=False,
    ),
]


def demo_store_url(demo: str) -> str:
    """The file a demo writes to when given no `--store`: its own, never the default store.

    Why: `chronik serve --demo` runs on `./chronik.db` (or `$CHRONIK_STORE`) with workers of its
    own; a demo writing there hands its jobs to the server's workers and leaves dead groups and
    stray products in the console. So a demo neither reads `$CHRONIK_STORE` nor uses `chronik.db`.
    """
    return f"sqlite:///./chronik-{demo}-demo.db"


def demo_store_option(demo: str) -> Any:
    """The `--store` option of `chronik demo <demo>`, whose help says which file it uses by default."""
    return typer.Option(
        "--store",
        "-s",
        help=f"Store URL (memory://, sqlite:///path.db, postgresql://...). Default: this demo's own "
        f"file, {demo_store_url(demo)} (not $CHRONIK_STORE, nor the ./chronik.db a running "
        "`chronik serve` may be using).",
        show_default=False,
    )


class CommandFailed(Exception):
    """A request understood but refused: reported as one line, exit code 1."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` on stderr, one line never wrapped (scripts read it whole), and exit:
    1 the command was understood but refused or something was not found, 2 (`usage_error`) the
    command line is wrong. The convention of every command, written down in docs/CLI.md."""
    # Escaped: a path or a database's message may hold `[...]`, which Rich would read as markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


def usage_error(message: str) -> NoReturn:
    """A value on the command line that cannot be right (a time that is not one): one line, exit 2."""
    fail(message, 2)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn chronik's own errors (and refusals the command detects) into one line and exit code 1."""
    try:
        yield
    except (ChronikError, CommandFailed) as error:
        fail(str(error))


def missing_sqlite_file(url: str) -> str | None:
    """The path of a `sqlite:///` URL whose file does not exist, else None."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        return None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return path if path and not Path(path).exists() else None


@contextlib.contextmanager
def opened_store(url: str | None, *, create: bool = False) -> Iterator[EventStore]:
    """The store `url` names (default: `$CHRONIK_STORE`, else `sqlite:///./chronik.db`), closed after.

    `create=False` (commands that only read or act on what is there): a SQLite file that does not
    exist is refused instead of created. Errors inside the block are reported like opening errors.
    """
    url = url or default_store_url()
    if not create and (path := missing_sqlite_file(url)) is not None:
        fail(f"no store at {path!r} (from {url}); pass --store or set CHRONIK_STORE")
    with reported_errors():
        store = open_store(url)
    try:
        with reported_errors():
            yield store
    finally:
        store.close()
