"""`chronik serve` and `chronik keys create|list|revoke|open-access`.

`serve` binds to 127.0.0.1 unless told otherwise, and refuses (exit 2) to bind anywhere else
while the store holds no API key: an event store open to the network without authentication is
never a default. On loopback, requests are allowed without a key until the first key is created;
revoking keys never allows them again, `chronik keys open-access` does.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chronik.cli.help import CliApp
from chronik.cli.stores import StoreOption
from chronik.errors import ChronikError
from chronik.store import default_store_url, open_store

keys_app = CliApp(
    help="API keys for `chronik serve`: create, list, revoke; open access again.", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, highlight=False)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind. Anything but loopback needs API keys.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8000,
    store_url: StoreOption = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed the example applications and run their workers.")
    ] = False,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body accepted.")] = 8
    * 1024
    * 1024,
    log_level: Annotated[str, typer.Option(help="Log level (debug, info, warning).")] = "info",
    blobs: Annotated[
        Path | None,
        typer.Option(
            help="Folder for uploaded videos and their outputs (default: beside a SQLite file, "
            "app.db -> app-blobs/; else ./chronik-blobs).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API, live subscriptions, /metrics and the web console (http://HOST:PORT/)."""
    import uvicorn

    from chronik.server import create_app
    from chronik.server.demo import start_demo
    from chronik.server.keys import KeyRingError, keyring_for

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    loopback = is_loopback(host)
    shown = f"[{host}]" if ":" in host else host
    # Bound first, before the store is opened (or created) and the demo seeded: a busy port is then
    # the one thing said, in one line.
    listening = listen(host, port)
    port = listening.getsockname()[1]  # the port taken, also for --port 0
    try:
        store = open_store(store_url)
    except ChronikError as error:
        listening.close()
        raise _fail(str(error), 1) from None
    try:
        try:
            ring = keyring_for(store)
            has_keys, keys_required = ring.has_active_keys(), ring.requires_keys()
        except KeyRingError:
            ring, has_keys, keys_required = None, False, False
        if not loopback and not has_keys:
            raise _fail(
                f"refusing to serve on {host}: no API key exists in {store.url}, so anyone who can reach "
                "this "
                "address could read and write every stream. Create one first (chronik keys create NAME "
                "--scope read), or bind to 127.0.0.1.",
                2,
            )
        app = create_app(
            store, keyring=ring, allow_anonymous=loopback, max_body_bytes=max_body_bytes, blobs_dir=blobs
        )
        if demo:
            start_demo(app.state.chronik)
        auth = "API keys required" if keys_required else "no API keys: open to this machine only"
        err.print(f"chronik serving {store.url} on http://{shown}:{port}/ ({auth})", highlight=False)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level.lower(),
            timeout_graceful_shutdown=3,
            access_log=False,
        )
        uvicorn.Server(config).run(sockets=[listening])
    finally:
        listening.close()
        store.close()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to HOST:PORT, or exit 1 with one line saying why not (a busy port, a bad address)."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on TCP-protocol sockets (else 40 ms per response)
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart at once
    try:
        listening.bind((address, port))
    except OSError as error:
        listening.close()
        shown = f"[{address}]" if family == socket.AF_INET6 else address
        reason = error.strerror or str(error)
        busy = error.errno == errno.EADDRINUSE
        hint = " (another server is using it: stop it or choose another --port)" if busy else ""
        raise _fail(f"cannot listen on {shown}:{port}: {reason}{hint}", 1) from None
    return listening


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="Who or what uses the key, e.g. ci-reader.")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="read, append or admin (repeatable; admin implies all).")
    ],
    prefix: Annotated[
        list[str] | None,
        typer.Option("--prefix", help="Limit the key to streams starting with this (repeatable)."),
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Create a key and print it once (only its SHA-256 is stored)."""
    from chronik.server.keys import keyring_for

    with open_store(store_url) as store:
        try:
            key, token = keyring_for(store).create(name, scope, prefix or (), now=store.clock())
        except ChronikError as error:
            raise _fail(str(error), 1) from None
    err.print(
        f"created key {key.key_id} ({key.name}; scopes {', '.join(key.scopes)}"
        + (f"; streams {', '.join(key.stream_prefixes)}" if key.stream_prefixes else "")
        + "). It is shown once; store it now:",
        highlight=False,
    )
    out.out(token)


@keys_app.command("list")
def list_keys(store_url: StoreOption = None) -> None:
    """Keys with their scopes, prefixes and state (never the secrets: they are not stored)."""
    from chronik.server.keys import keyring_for

    with open_store(store_url) as store:
        try:
            ring = keyring_for(store)
            keys, required = ring.list(), ring.requires_keys()
        except ChronikError as error:
            raise _fail(str(error), 1) from None
    table = Table(
        title=f"API keys in {store.url if store_url else default_store_url()}",
        caption="keys required"
        if required
        else "open: a loopback server takes requests without a key until a key is created",
    )
    for column in ("id", "name", "scopes", "streams", "created", "state"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.key_id,
            key.name,
            ", ".join(key.scopes),
            ", ".join(key.stream_prefixes) or "all",
            key.created_at.isoformat(timespec="seconds"),
            "active"
            if key.active
            else f"revoked {key.revoked_at.isoformat(timespec='seconds') if key.revoked_at else ''}",
        )
    out.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (the 12 hex digits after chronik_).")],
    store_url: StoreOption = None,
) -> None:
    """Revoke a key: a running server refuses it within a second."""
    from chronik.server.keys import keyring_for

    with open_store(store_url) as store:
        try:
            revoked = keyring_for(store).revoke(key_id, now=store.clock())
        except ChronikError as error:
            raise _fail(str(error), 1) from None
    if not revoked:
        raise _fail(f"no active key {key_id!r}", 1)
    out.print(f"revoked key {key_id}")


@keys_app.command("open-access")
def open_access(store_url: StoreOption = None) -> None:
    """Let a loopback server take requests without a key again (refused while a key is active).

    Revoking every key never does this by itself: once keys are in use they stay required.
    """
    from chronik.server.keys import keyring_for

    with open_store(store_url) as store:
        try:
            keyring_for(store).open_access(now=store.clock())
        except ChronikError as error:
            raise _fail(str(error), 1) from None
    out.print(
        "access is open: a server on a loopback address takes requests without a key (a running one "
        "within a second) until a key is created; servers on other addresses still refuse them"
    )
