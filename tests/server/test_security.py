"""API keys: scopes, stream prefixes, revocation, hashed storage, and the loopback rule of `chronik serve`."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from chronik.cli.app import app as cli
from chronik.cli.serve import is_loopback, listen
from chronik.server.keys import SQLiteKeyRing, keyring_for, split_token
from tests.server.conftest import LiveServer, ServerFactory, chronik_serve, event, wait_for


def make_key(live: LiveServer, *scopes: str, prefixes: tuple[str, ...] = ()) -> str:
    ring = keyring_for(live.store)
    _, token = ring.create(f"test-{'-'.join(scopes)}", scopes, prefixes, now=live.store.clock())
    live.state.forget_key_cache()
    return token


def test_on_loopback_without_keys_requests_need_none(http: httpx.Client) -> None:
    assert http.post("/api/streams/a-1/events", json={"events": [event()]}).status_code == 200
    info = http.get("/api/info").json()
    assert info["keys_required"] is False and info["you"]["anonymous"] is True


def test_once_a_key_exists_every_request_needs_one(live: LiveServer) -> None:
    token = make_key(live, "read")
    with live.client() as anonymous:
        refused = anonymous.get("/api/streams")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.headers["content-type"] == "application/problem+json"
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/healthz").status_code == 200  # says nothing about the data
        assert anonymous.get("/api/info").json()["keys_required"] is True
    with live.client("chronik_000000000000_wrong") as wrong:
        assert wrong.get("/api/streams").status_code == 401
    with live.client(token) as reader:
        assert reader.get("/api/streams").status_code == 200
    with httpx.Client(base_url=live.url, headers={"X-API-Key": token}) as by_header:
        assert by_header.get("/api/streams").status_code == 200


def test_scopes_read_append_admin(live: LiveServer) -> None:
    reader, writer, admin = make_key(live, "read"), make_key(live, "append"), make_key(live, "admin")
    body = {"events": [event()]}
    with live.client(reader) as http:
        denied = http.post("/api/streams/a-1/events", json=body)
        assert denied.status_code == 403 and "append" in denied.json()["detail"]
    with live.client(writer) as http:
        assert http.post("/api/streams/a-1/events", json=body).status_code == 200
        assert http.get("/api/streams").status_code == 403  # append does not imply read
        assert http.post("/api/projections/carts_by_status/rebuild").status_code == 403
    with live.client(admin) as http:  # admin implies every scope
        assert http.get("/api/streams/a-1/events").status_code == 200
        assert http.post("/api/streams/a-1/events", json=body).status_code == 200
        assert http.get("/metrics").status_code == 200


def test_a_key_limited_to_a_prefix_sees_and_writes_only_those_streams(live: LiveServer) -> None:
    admin = make_key(live, "admin")
    with live.client(admin) as http:
        for stream in ("shop-1", "stock-1"):
            http.post(f"/api/streams/{stream}/events", json={"events": [event()]})
    limited = make_key(live, "read", "append", prefixes=("shop-",))
    with live.client(limited) as http:
        assert http.get("/api/streams/shop-1/events").status_code == 200
        assert http.get("/api/streams/stock-1/events").status_code == 403
        assert http.post("/api/streams/stock-1/events", json={"events": [event()]}).status_code == 403
        assert http.post("/api/streams/shop-2/events", json={"events": [event()]}).status_code == 200
        multi = {
            "appends": [{"stream": "shop-3", "events": [event()]}, {"stream": "x-1", "events": [event()]}]
        }
        assert http.post("/api/append", json=multi).status_code == 403
        assert [s["stream"] for s in http.get("/api/streams").json()["streams"]] == ["shop-1", "shop-2"]
        assert {e["stream"] for e in http.get("/api/log").json()["events"]} == {"shop-1", "shop-2"}
        assert http.get("/api/projections").status_code == 403
        assert http.get("/api/groups").status_code == 403


def test_a_revoked_key_is_refused(live: LiveServer) -> None:
    token = make_key(live, "read")
    make_key(live, "read")  # another key stays, so the server still requires keys
    ring = keyring_for(live.store)
    parts = split_token(token)
    assert parts is not None
    assert ring.revoke(parts[0], now=live.store.clock()) is True
    assert ring.revoke(parts[0], now=live.store.clock()) is False
    with live.client(token) as http:
        assert http.get("/api/streams").status_code == 401


def test_away_from_loopback_no_keys_means_no_access(make_server: ServerFactory) -> None:
    live = make_server(allow_anonymous=False)
    with live.client() as http:
        assert http.get("/api/streams").status_code == 401


def test_keys_are_stored_as_hashes_only(tmp_path: Path, live: LiveServer) -> None:
    token = make_key(live, "read")
    _, secret = split_token(token) or ("", "")
    ring = keyring_for(live.store)
    assert isinstance(ring, SQLiteKeyRing)
    path = live.store.url.removeprefix("sqlite:///")
    rows = sqlite3.connect(path).execute("SELECT * FROM api_keys").fetchall()
    assert rows and secret not in repr(rows)
    assert ring.verify(token) is not None
    assert ring.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ring.verify("not-a-token") is None


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    runner = CliRunner()
    created = runner.invoke(
        cli, ["keys", "create", "ci", "--scope", "read", "--prefix", "shop-", "--store", url]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("chronik_")
    listed = runner.invoke(cli, ["keys", "list", "--store", url])
    assert "ci" in listed.stdout and "shop-" in listed.stdout and token not in listed.stdout
    key_id = token.split("_")[1]
    assert runner.invoke(cli, ["keys", "revoke", key_id, "--store", url]).exit_code == 0
    assert runner.invoke(cli, ["keys", "revoke", key_id, "--store", url]).exit_code == 1
    bad = runner.invoke(cli, ["keys", "create", "x", "--scope", "root", "--store", url])
    assert bad.exit_code == 1 and "unknown scope" in bad.output


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'public.db'}"
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0", "--store", url])
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0" in result.output and "chronik keys create" in result.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_readiness_is_open_but_shows_the_head_only_to_readers(live: LiveServer) -> None:
    token = make_key(live, "read")
    with live.client() as anonymous:
        assert anonymous.get("/readyz").json() == {"status": "ready"}
    with live.client(token) as reader:
        assert reader.get("/readyz").json() == {"status": "ready", "head_position": 0}


def test_a_prefix_limited_subscription_sees_only_its_streams(live: LiveServer) -> None:
    admin = make_key(live, "admin")
    with live.client(admin) as http:
        for stream in ("shop-1", "stock-1", "shop-2"):
            http.post(f"/api/streams/{stream}/events", json={"events": [event()]})
    limited = make_key(live, "read", prefixes=("shop-",))
    with live.client(limited) as http:
        text = http.get("/api/log/subscribe", params={"timeout": 1, "max_events": 10}).text
    assert '"stream":"shop-1"' in text and '"stream":"shop-2"' in text
    assert "stock-1" not in text


def cli_line(*args: str) -> str:
    """Run the real `chronik` and return its stdout (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "chronik", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def anonymous_answers(url: str) -> tuple[int, int, int]:
    """The statuses of a read, an append and an admin request sent without a key."""
    with httpx.Client(base_url=url, timeout=10) as anonymous:
        return (
            anonymous.get("/api/streams").status_code,
            anonymous.post("/api/streams/open-1/events", json={"events": [event()]}).status_code,
            anonymous.post("/api/projections/carts_by_status/rebuild").status_code,
        )


@pytest.mark.slow
def test_revoking_the_last_key_keeps_a_running_server_closed_until_access_is_opened(tmp_path: Path) -> None:
    """Before the fix, two seconds after the revocation anonymous requests could read, append and rebuild."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    token = cli_line("keys", "create", "admin", "--scope", "admin", "--store", url).splitlines()[-1]
    with chronik_serve(url) as served:
        assert anonymous_answers(served.url) == (401, 401, 401)
        cli_line("keys", "revoke", token.split("_")[1], "--store", url)
        time.sleep(2.2)  # a running server re-reads the keys at most once a second
        assert anonymous_answers(served.url) == (401, 401, 401)
        assert httpx.get(f"{served.url}/api/info").json()["keys_required"] is True
        assert "keys required" in cli_line("keys", "list", "--store", url)
        opened = cli_line("keys", "open-access", "--store", url)
        assert opened.startswith("access is open")
        wait_for(lambda: anonymous_answers(served.url)[0] == 200, timeout=5)
        assert anonymous_answers(served.url)[1] == 200
    assert served.process.returncode in (0, 130), served.errors


def test_opening_access_is_refused_while_a_key_is_active(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    runner = CliRunner()
    token = runner.invoke(cli, ["keys", "create", "ci", "--scope", "read", "--store", url]).stdout.split()[-1]
    refused = runner.invoke(cli, ["keys", "open-access", "--store", url])
    assert refused.exit_code == 1
    assert f"1 key(s) are active ({token.split('_')[1]}): revoke them first" in refused.output


def test_the_openapi_schema_needs_a_read_key_once_keys_are_required(live: LiveServer) -> None:
    with live.client() as anonymous:
        assert "/api/streams" in anonymous.get("/api/openapi.json").json()["paths"]  # open loopback server
        writer = make_key(live, "append")
        refused = anonymous.get("/api/openapi.json")
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    with live.client(writer) as http:
        assert http.get("/api/openapi.json").status_code == 403  # append does not imply read
    with live.client(make_key(live, "read")) as http:
        assert "/api/streams" in http.get("/api/openapi.json").json()["paths"]


def test_serve_answers_without_nagle_delay() -> None:
    """`serve`'s own listening socket must be a TCP one (proto IPPROTO_TCP): asyncio sets
    TCP_NODELAY only on such sockets' connections, and without it a response's headers and body
    wait for the client's delayed ACK, 40 ms each (measured: 44 ms per request, 23 req/s)."""

    async def accepted_nodelay() -> int:
        listening = listen("127.0.0.1", 0)
        found: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            found.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
            value = await asyncio.wait_for(found, 5)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0
