"""The CLI's commands through typer's runner: output, exit codes, and no tracebacks for user mistakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chronik.cli.app import app
from chronik.store import open_store
from tests.conftest import StoreFactory

runner = CliRunner()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def chronik(store_url: str, *args: str, input: str | None = None) -> Result:
    return runner.invoke(app, [*args, "--store", store_url], input=input)


def test_append_then_read_a_stream(store_url: str) -> None:
    first = chronik(
        store_url, "append", "cart-1", "ItemAdded", '{"sku": "tea", "quantity": 2}', "--actor", "ann"
    )
    assert first.exit_code == 0, first.output
    assert "at version 0" in first.stdout
    second = chronik(
        store_url, "append", "cart-1", "ItemAdded", "-", "--expected-version", "0", input='{"sku": "mug"}'
    )
    assert second.exit_code == 0, second.output
    listed = chronik(store_url, "read", "cart-1", "--json")
    assert listed.exit_code == 0
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(e["stream_version"], e["data"]["sku"]) for e in events] == [(0, "tea"), (1, "mug")]
    assert events[0]["metadata"]["actor"] == "ann"
    backwards = chronik(store_url, "read", "cart-1", "--backwards", "--limit", "1", "--json")
    assert [json.loads(line)["data"]["sku"] for line in backwards.stdout.splitlines()] == ["mug"]
    table = chronik(store_url, "read", "cart-1", "--from", "1")
    assert "ItemAdded" in table.stdout and "mug" in table.stdout and "tea" not in table.stdout


def test_read_all_filters_by_category_and_type(store_url: str) -> None:
    for stream, event_type in (
        ("cart-1", "ItemAdded"),
        ("product-tea", "ProductUpdated"),
        ("cart-2", "CheckedOut"),
    ):
        assert chronik(store_url, "append", stream, event_type).exit_code == 0
    everything = chronik(store_url, "read", "--all", "--json")
    assert [json.loads(line)["global_position"] for line in everything.stdout.splitlines()] == [1, 2, 3]
    carts = chronik(store_url, "read", "--all", "--category", "cart", "--from", "2", "--json")
    assert [json.loads(line)["stream"] for line in carts.stdout.splitlines()] == ["cart-2"]
    typed = chronik(store_url, "read", "--all", "--type", "ProductUpdated", "--json")
    assert [json.loads(line)["stream"] for line in typed.stdout.splitlines()] == ["product-tea"]


@pytest.mark.sql_stores
def test_history_shows_who_did_what_and_why(store_factory: StoreFactory) -> None:
    store_url = store_factory().url  # a SQLite file, or a PostgreSQL schema (`?schema=` in the URL)
    added = chronik(store_url, "append", "cart-1", "ItemAdded", '{"sku":"tea"}', "--actor", "ann")
    assert added.exit_code == 0, added.output
    chronik(store_url, "append", "cart-1", "CheckedOut", "--metadata", '{"causation_id": "order-7"}')
    result = runner.invoke(app, ["history", "cart-1", "--store", store_url])
    assert result.exit_code == 0, result.output
    assert "history of cart-1" in result.stdout
    assert all(text in result.stdout for text in ("ann", "order-7", "CheckedOut", '{"sku":"tea"}'))
    # One row per event, in version order, each with its recorded time and version.
    with open_store(store_url) as store:
        events = store.read_stream("cart-1")
    rows = [line for line in result.stdout.splitlines() if "ItemAdded" in line or "CheckedOut" in line]
    assert len(rows) == 2
    for row, event in zip(rows, events, strict=True):
        cells = [cell.strip() for cell in row.strip("│┃ ").split("│")]
        assert cells[:3] == [
            event.recorded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            str(event.stream_version),
            event.type,
        ]


def test_state_hydrates_through_the_registered_aggregate_and_time_travels(store_url: str) -> None:
    chronik(store_url, "append", "cart-9", "ItemAdded", '{"sku":"tea","quantity":2}')
    with open_store(store_url) as store:
        first_recorded = store.read_stream("cart-9")[0].recorded_at
    chronik(store_url, "append", "cart-9", "ItemRemoved", '{"sku":"tea","quantity":1}')
    now = json.loads(chronik(store_url, "state", "cart-9").stdout)
    assert (now["aggregate"], now["version"], now["state"]["items"]) == ("Cart", 1, {"tea": 1})
    by_version = json.loads(chronik(store_url, "state", "cart-9", "--version", "0").stdout)
    assert by_version["state"]["items"] == {"tea": 2}
    by_time = json.loads(chronik(store_url, "state", "cart-9", "--as-of", first_recorded.isoformat()).stdout)
    assert by_time["version"] == 0
    later = (datetime.now(first_recorded.tzinfo) + timedelta(days=1)).isoformat()
    by_business_time = json.loads(chronik(store_url, "state", "cart-9", "--occurred-as-of", later).stdout)
    assert by_business_time["version"] == 1
    # the bounds combine (they were refused together): each keeps only the events within it
    at = first_recorded.isoformat()
    both = json.loads(chronik(store_url, "state", "cart-9", "--version", "1", "--as-of", at).stdout)
    assert both["version"] == 0
    bitemporal = chronik(store_url, "state", "cart-9", "--occurred-as-of", later, "--as-of", at).stdout
    assert json.loads(bitemporal)["state"]["items"] == {"tea": 2}


def test_state_past_the_streams_last_version_says_so(store_url: str) -> None:
    """Issue #17.9: `--version 99` of a stream at version 1 printed version 1 as if asked for it."""
    chronik(store_url, "append", "cart-9", "ItemAdded", '{"sku":"tea","quantity":2}')
    chronik(store_url, "append", "cart-9", "ItemAdded", '{"sku":"mug","quantity":1}')
    past = chronik(store_url, "state", "cart-9", "--version", "99")
    assert past.exit_code == 1 and past.stdout == ""
    assert past.stderr == "error: aggregate stream 'cart-9' has no version 99: its last version is 1\n"
    assert json.loads(chronik(store_url, "state", "cart-9", "--version", "1").stdout)["version"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("append", "cart-1", "ItemAdded", "{not json"), "DATA_JSON is not valid JSON"),
        (("append", "cart-1", "ItemAdded", "[1, 2]"), "must be a JSON object"),
        (("append", "cart-1", "ItemAdded", "--metadata", "nope"), "--metadata is not valid JSON"),
        (("append", "cart 1", "ItemAdded"), "invalid stream name"),
        (("append", "cart-1", "9bad"), "invalid event type"),
        (("read", "cart-404"), "stream 'cart-404' not found"),
        (("history", "cart-404"), "not found"),
        (("state", "cart-404"), "'cart-404' has no events"),
        (("state", "invoice-1"), "no aggregate type is registered for category 'invoice'"),
        (("append", "cart-1", "X", "--expected-version", "no_stream"), "expected no_stream, found version 0"),
    ],
)
def test_user_mistakes_exit_1_with_a_message_and_no_traceback(
    store_url: str, args: tuple[str, ...], message: str
) -> None:
    chronik(store_url, "append", "cart-1", "ItemAdded", '{"sku":"tea"}')
    result = chronik(store_url, *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("read",), "give a STREAM or --all"),
        (("read", "cart-1", "--all"), "give a STREAM or --all"),
        (("read", "--all", "--backwards"), "--backwards"),
        (("read", "cart-1", "--category", "cart"), "filter --all"),
        (("read", "cart-1", "--limit", "-1"), "--limit"),
        (("append", "cart-1", "X", "--expected-version", "soon"), "invalid expected version"),
        (("state", "cart-1", "--as-of", "yesterday"), "not an ISO 8601 time"),
        (("append",), "Missing argument"),
        (("frobnicate",), "No such command"),
    ],
)
def test_bad_options_are_usage_errors_exit_2(store_url: str, args: tuple[str, ...], message: str) -> None:
    result = chronik(store_url, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_the_cart_demo_tells_every_scene_on_any_store() -> None:
    result = runner.invoke(app, ["demo", "cart", "--store", "memory://"], terminal_width=160)
    assert result.exit_code == 0, result.output
    scenes = [
        "1. Facts",
        "2. Hydration",
        "3. Time travel",
        "4. A product update",
        "5. The race",
        "7. The audit",
    ]
    positions = [result.stdout.index(scene) for scene in scenes]
    assert positions == sorted(positions)
    assert "conflict detected: wrong expected version" in result.stdout
    assert "bob pays €5.50" in result.stdout
    assert "chronik state" not in result.stdout  # no pointers to a store that is gone afterwards


@pytest.mark.parametrize("demo", ["cart", "bank", "video"])
def test_a_demos_help_names_the_store_it_uses(demo: str) -> None:
    """Issue #17.6: `chronik demo bank --help` said $CHRONIK_STORE or ./chronik.db, while it used a
    file of its own."""
    result = runner.invoke(app, ["demo", demo, "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert f"Default: this demo's own file, sqlite:///./chronik-{demo}-demo.db" in text
    assert "Default: $CHRONIK_STORE" not in text


def test_help_files_every_command_under_a_panel_by_concern() -> None:
    """A command added without a panel would land in typer's catch-all "Commands" box."""
    result = runner.invoke(app, ["--help"], terminal_width=120)
    assert result.exit_code == 0
    for panel in (
        "The log",
        "Audit and read models",
        "Workers and consumer groups",
        "Server",
        "Example applications",
    ):
        assert f"─ {panel} ─" in result.output
    assert "─ Commands ─" not in result.output
    log_panel = result.output.split("─ The log ─")[1].split("─ Audit and read models ─")[0]
    assert "append" in log_panel and "read" in log_panel and "verify" not in log_panel


@pytest.mark.parametrize(
    "args",
    [
        ("read", "cart-1"),
        ("read", "--all"),
        ("history", "cart-1"),
        ("state", "cart-1"),
        ("groups", "status"),
        ("groups", "parked", "workers"),
        ("video", "status"),
        ("video", "retry", "0190c1d2-7e3a-7b3c-8d4e-5f6a7b8c9d0e"),
    ],
)
def test_a_command_that_reads_refuses_a_mistyped_sqlite_path_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "typo.db"
    result = chronik(f"sqlite:///{missing}", *args)
    assert result.exit_code == 1, result.output
    assert f"no store at '{missing}'" in result.stderr
    assert "Traceback" not in result.output
    assert not missing.exists()


def test_an_error_naming_brackets_is_printed_as_written(tmp_path: Path) -> None:
    """Review finding: `[...]` in a path was read as Rich markup (eaten, or a MarkupError traceback)."""
    for name in ("[x]/store.db", "[/x].db"):
        missing = tmp_path / name
        result = chronik(f"sqlite:///{missing}", "read", "--all")
        assert result.exit_code == 1, result.output
        assert f"no store at '{missing}'" in result.stderr
        assert "Traceback" not in result.output


def test_append_creates_the_store_it_is_pointed_at(tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    assert chronik(f"sqlite:///{new}", "append", "cart-1", "ItemAdded").exit_code == 0
    assert new.exists()
    assert chronik(f"sqlite:///{new}", "groups", "status").stdout.strip() == "no consumer groups"


def test_a_bad_store_url_is_one_line_for_the_worker_too() -> None:
    result = runner.invoke(app, ["worker", "g", "--handler", "json:loads", "--store", "mysql://x"])
    assert result.exit_code == 1, result.output
    assert "the scheme must be memory://, sqlite:/// or postgresql://" in result.stderr
    assert "Traceback" not in result.output
