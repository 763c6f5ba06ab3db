"""The projection and audit commands, through typer's CliRunner and a real subprocess."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from chronik import NewEvent
from chronik.cli.projections import _progress, projections_app, standalone_app
from chronik.examples.cart.projections import CartsByStatus
from chronik.projections import ScratchView, rebuild, scratch_labels
from chronik.store import EventStore, open_store
from tests.conftest import StoreFactory
from tests.projections.conftest import Counts, append_deposits
from tests.projections.sample_projections import BREAK_CHECKOUTS
from tests.raw_sql import execute_behind_the_store, log_positions, table_names

pytestmark = pytest.mark.sql_stores

runner = CliRunner()


@pytest.fixture
def store(store_factory: StoreFactory) -> EventStore:
    """31 cart events: a SQLite file or a fresh PostgreSQL schema (its URL carries `?schema=`)."""
    store = store_factory()
    for index in range(30):
        store.append(
            f"cart-{index % 3}",
            [
                NewEvent(
                    type="ItemAdded", data={"sku": f"sku{index % 4}", "quantity": 1, "unit_price_cents": 10}
                )
            ],
        )
    store.append("cart-0", [NewEvent(type="CheckedOut", data={}, metadata={"correlation_id": "checkout-7"})])
    return store


@pytest.fixture
def store_url(store: EventStore) -> str:
    return store.url


@pytest.fixture
def head(store: EventStore) -> int:
    """The last event's position: 31 on SQLite, a large sparse number on PostgreSQL."""
    return log_positions(store)[-1]


def status_cells(output: str, name: str) -> list[str]:
    """The cells of NAME's row in `projections status`: name, live, built by, code, position, lag, ..."""
    line = next(line for line in output.splitlines() if f" {name} " in line)
    return [cell.strip() for cell in line.strip().strip("│").split("│")]


def test_rebuild_and_status(store: EventStore, store_url: str, head: int) -> None:
    result = runner.invoke(
        projections_app, ["rebuild", "carts_by_status", "--store", store_url, "--batch-size", "7"]
    )
    assert result.exit_code == 0, result.output
    assert f"carts_by_status: version 2 is live at position {head}; 31 events applied" in result.output
    status = runner.invoke(projections_app, ["status", "--store", store_url])
    assert status.exit_code == 0, status.output
    assert status_cells(status.output, "carts_by_status")[1:6] == ["v2", "code v1", "v1", str(head), "0"]
    assert "product_prices" in status.output and "not built" in status.output
    store.append("cart-5", [NewEvent(type="ItemAdded", data={}), NewEvent(type="ItemAdded", data={})])
    behind = runner.invoke(projections_app, ["status", "--store", store_url])
    assert status_cells(behind.output, "carts_by_status")[5] == "2"  # lag in events, not positions


def scratch_carts(store: EventStore, label: str) -> int:
    """How many carts the scratch set `label` of carts_by_status holds."""
    carts = CartsByStatus(store)
    return int(ScratchView(carts, f"scratch_{label}", 0).query("SELECT count(*) FROM {carts}")[0][0])


def test_rebuild_as_of_leaves_live_alone(store: EventStore, store_url: str) -> None:
    app = standalone_app()
    events = store.read_all()
    fifth = events[4].global_position  # the first five events touch carts 0, 1 and 2 (cart-3 never exists)
    result = runner.invoke(
        app, ["projections", "rebuild", "carts_by_status", "--as-of", str(fifth), "-s", store_url]
    )
    assert result.exit_code == 0, result.output
    label = f"asof_p{fifth}"
    assert (
        f"log position {fifth}" in result.output
        and f"carts_by_status__carts__scratch_{label}" in result.output
    )
    assert "5/5" in result.stderr  # progress in events, also on PostgreSQL's sparse positions
    assert scratch_carts(store, label) == 3
    status = runner.invoke(app, ["projections", "status", "-s", store_url])
    assert label in status.output and status_cells(status.output, "carts_by_status")[1] == "v1"
    drop = ["projections", "drop-scratch", "carts_by_status", label, "-s", store_url]
    dropped = runner.invoke(app, drop)
    assert dropped.exit_code == 0 and "dropped 1 scratch set(s)" in dropped.output
    again = runner.invoke(app, drop)
    assert again.exit_code == 1 and f"no scratch set '{label}'" in again.output  # not found
    bad = runner.invoke(
        app, ["projections", "rebuild", "carts_by_status", "--as-of", "last tuesday", "-s", store_url]
    )
    assert bad.exit_code == 2 and "neither a log position nor" in bad.output


def test_rebuild_as_of_a_time_keeps_what_was_recorded_by_then(store: EventStore, store_url: str) -> None:
    events = store.read_all()
    moment = events[1].recorded_at.isoformat()  # the first two events: carts 0 and 1
    result = runner.invoke(
        standalone_app(), ["projections", "rebuild", "carts_by_status", "--as-of", moment, "-s", store_url]
    )
    assert result.exit_code == 0, result.output
    assert f"log position {events[1].global_position}" in result.output
    assert "2/2" in result.stderr  # the total counts only events recorded by then
    [label] = scratch_labels(CartsByStatus(store))
    assert label.startswith("asof_2") and scratch_carts(store, label) == 2


def test_run_once_catches_the_projections_up(store_url: str, head: int) -> None:
    result = runner.invoke(projections_app, ["run", "carts_by_status", "--once", "-s", store_url])
    assert result.exit_code == 0, result.output
    assert f"caught up: carts_by_status at {head}" in result.output
    status = runner.invoke(projections_app, ["status", "-s", store_url])
    assert status_cells(status.output, "carts_by_status")[1:6] == ["v1", "code v1", "v1", str(head), "0"]


def test_reconcile_refuses_a_projection_never_built_and_creates_nothing(
    store: EventStore, store_url: str
) -> None:
    before = table_names(store)
    result = runner.invoke(standalone_app(), ["reconcile", "carts_by_status", "-s", store_url])
    assert result.exit_code == 1, result.output
    assert (
        "projection 'carts_by_status' has never been built in this store; run "
        "`chronik projections run carts_by_status` or `rebuild` first"
    ) in result.output
    assert "Traceback" not in result.output and "match the log" not in result.output
    assert table_names(store) == before  # no registry, no tables


def test_run_needs_names_or_all(store: EventStore, store_url: str, head: int) -> None:
    before = table_names(store)
    bare = runner.invoke(projections_app, ["run", "--once", "-s", store_url])
    assert bare.exit_code == 2, bare.output
    assert "name the projections to run (registered: " in bare.output and "or pass --all" in bare.output
    assert table_names(store) == before  # nothing built
    both = runner.invoke(projections_app, ["run", "carts_by_status", "--all", "--once", "-s", store_url])
    assert both.exit_code == 2 and "names or --all, not both" in both.output
    every = runner.invoke(projections_app, ["run", "--all", "--once", "-s", store_url])
    assert every.exit_code == 0, every.output
    assert f"carts_by_status at {head}" in every.output and "product_prices at" in every.output


def test_unknown_projection_and_missing_store_are_not_found_exit_1(store_url: str, tmp_path: Path) -> None:
    """Exit 1 like every command's "not found" (docs/CLI.md); it was 2 here, 1 in `groups status`."""
    result = runner.invoke(projections_app, ["rebuild", "nope", "--store", store_url])
    assert result.exit_code == 1
    assert "no projection named 'nope'" in result.output and "carts_by_status" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(projections_app, ["status", "--store", f"sqlite:///{tmp_path / 'typo.db'}"])
    assert missing.exit_code == 1 and "no store at" in missing.output
    assert not (tmp_path / "typo.db").exists()


def test_reconcile_prints_the_corrupted_row_and_exits_1(store: EventStore, store_url: str) -> None:
    app = standalone_app()
    assert runner.invoke(app, ["projections", "rebuild", "carts_by_status", "-s", store_url]).exit_code == 0
    clean = runner.invoke(app, ["reconcile", "carts_by_status", "-s", store_url])
    assert clean.exit_code == 0 and "match the log" in clean.output
    corrupt = "UPDATE carts_by_status__carts__v2 SET items = 99 WHERE cart_id = '1'"
    assert execute_behind_the_store(store, corrupt) == 1
    result = runner.invoke(app, ["reconcile", "carts_by_status", "-s", store_url])
    assert result.exit_code == 1, result.output
    assert "1 difference(s) between the live tables" in result.output
    assert "carts [cart_id='1'] differs: items: live 99 != rebuilt 10" in result.output


def test_reconcile_and_status_report_a_live_table_dropped_by_hand(store: EventStore, store_url: str) -> None:
    app = standalone_app()
    assert runner.invoke(app, ["projections", "rebuild", "carts_by_status", "-s", store_url]).exit_code == 0
    execute_behind_the_store(store, "DROP TABLE carts_by_status__cart_items__v2")
    result = runner.invoke(app, ["reconcile", "carts_by_status", "-s", store_url])
    assert result.exit_code == 1, result.output
    assert "live table carts_by_status__cart_items__v2 (cart_items) is missing" in result.output
    assert "Traceback" not in result.output
    status = runner.invoke(app, ["projections", "status", "-s", store_url])
    assert status.exit_code == 0, status.output
    assert "v2 (missing: cart_items; rebuild)" in status_cells(status.output, "carts_by_status")[1]


def test_trace_verify_and_seal(store: EventStore, store_url: str) -> None:
    app = standalone_app()
    traced = runner.invoke(app, ["trace", "checkout-7", "-s", store_url])
    assert traced.exit_code == 0 and "CheckedOut" in traced.output and "cart-0" in traced.output
    assert runner.invoke(app, ["trace", "nothing", "-s", store_url]).exit_code == 1
    verified = runner.invoke(app, ["verify", "-s", store_url, "--seal-size", "10"])
    assert verified.exit_code == 0, verified.output
    assert "OK: 31 events in 3 streams; 0 seal(s) verified, 4 added" in verified.output
    assert "nothing to seal" in runner.invoke(app, ["seal", "-s", store_url]).output
    seventeenth = log_positions(store)[16]  # cart-1's sixth event
    edit = 'UPDATE events SET data = \'{"sku":"gold"}\' WHERE global_position = ?'
    assert execute_behind_the_store(store, edit, (seventeenth,)) == 1
    tampered = runner.invoke(app, ["verify", "-s", store_url])
    assert tampered.exit_code == 1
    assert "TAMPERED" in tampered.output and "stream 'cart-1'" in tampered.output
    assert f"position {seventeenth}" in tampered.output


def test_verify_in_a_real_process_names_the_deleted_event(store: EventStore, store_url: str) -> None:
    positions = log_positions(store)
    delete = "DELETE FROM events WHERE global_position = ?"
    assert execute_behind_the_store(store, delete, (positions[3],)) == 1
    env = {**os.environ, "CHRONIK_STORE": store_url}
    done = subprocess.run(
        [sys.executable, "-m", "chronik.cli.projections", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert f"missing at stream 'cart-0', version 2, position {positions[6]}" in done.stdout
    assert "Traceback" not in done.stderr


def run_cli(
    *args: str, store_url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]  # so `tests.projections.sample_projections` imports
    return subprocess.run(
        [sys.executable, "-m", "chronik.cli.projections", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CHRONIK_STORE": store_url, **(env or {})},
        cwd=root,
        timeout=60,
    )


def test_a_user_projection_is_found_by_name_in_a_real_process(store_url: str, head: int) -> None:
    module = "tests.projections.sample_projections"
    rebuilt = run_cli("projections", "rebuild", "event_type_counts", "--module", module, store_url=store_url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"event_type_counts: version 2 is live at position {head}" in rebuilt.stdout
    # The progress bar on stderr counts the 31 events (not positions: sparse on PostgreSQL), with a rate.
    assert "31/31" in rebuilt.stderr and "ev/s" in rebuilt.stderr
    assert re.search(r"eta \d+:\d\d:\d\d", rebuilt.stderr)  # an ETA, not "-:--:--"
    status = run_cli("projections", "status", "-m", module, store_url=store_url)
    assert status.returncode == 0 and "event_type_counts" in status.stdout
    reconciled = run_cli("reconcile", "event_type_counts", "-m", module, store_url=store_url)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    missing = run_cli("projections", "status", "-m", "no.such.module", store_url=store_url)
    assert missing.returncode == 2 and "cannot import projection module 'no.such.module'" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.timeout(60)
def test_run_keeps_a_projection_current_in_a_real_process_until_interrupted(store_url: str) -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "chronik.cli.projections", "projections", "run", "carts_by_status"],
        env={**os.environ, "CHRONIK_STORE": store_url},
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = open_store(store_url)
        carts = CartsByStatus(store)
        position = store.append("cart-9", [NewEvent(type="ItemAdded", data={"sku": "x"})]).last_position
        assert position is not None
        carts.wait_until(position, timeout=30)  # read-your-writes across processes
        assert carts.query("SELECT items FROM {carts} WHERE cart_id = '9'") == [(1,)]
        store.close()
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "running carts_by_status" in stdout and "Traceback" not in stderr


SAMPLES = "tests.projections.sample_projections"
BREAK = {BREAK_CHECKOUTS: "1"}


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_a_failing_handler_stops_a_rebuild_with_one_line_and_the_rebuild_resumes(
    store: EventStore, store_url: str, head: int
) -> None:
    positions = log_positions(store)
    cart_0_checkout = f"on event CheckedOut (stream 'cart-0', version 10, global position {head})"
    args = ("projections", "rebuild", "checkout_ledger", "-m", SAMPLES, "--batch-size", "2")
    failed = run_cli(*args, store_url=store_url, env=BREAK)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    [line] = error_lines(failed.stderr)
    assert f"projection 'checkout_ledger' failed {cart_0_checkout}: " in line
    assert re.search(r"(?i)not.null", line)  # the database's own message
    assert f"table set v2 is kept up to position {positions[29]}" in line
    status = runner.invoke(projections_app, ["status", "-m", SAMPLES, "-s", store_url])
    assert status_cells(status.output, "checkout_ledger")[6] == f"v2 at {positions[29]}"  # "rebuilding"
    resumed = run_cli(*args, store_url=store_url)
    assert resumed.returncode == 0, resumed.stderr
    assert f"version 2 is live at position {head} (resumed); 1 events applied" in resumed.stdout


def test_a_failing_handler_in_reconcile_as_of_and_run_is_one_line_and_leaves_nothing(
    store: EventStore, store_url: str, head: int
) -> None:
    app = standalone_app()
    built = runner.invoke(
        app, ["projections", "run", "checkout_ledger", "--once", "-m", SAMPLES, "-s", store_url]
    )
    assert built.exit_code == 0, built.output
    tables = table_names(store)
    checkout = f"global position {head})"
    for args, note in (
        (["reconcile", "checkout_ledger"], "the scratch tables were dropped"),
        (
            ["projections", "rebuild", "checkout_ledger", "--as-of", str(head)],
            "the scratch tables were dropped",
        ),
    ):
        result = runner.invoke(app, [*args, "-m", SAMPLES, "-s", store_url], env=BREAK)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        [line] = error_lines(result.output)
        assert checkout in line and note in line
        assert table_names(store) == tables  # no scratch set left behind
    later = store.append("cart-1", [NewEvent(type="CheckedOut", data={})]).last_position
    result = runner.invoke(
        app, ["projections", "run", "checkout_ledger", "--once", "-m", SAMPLES, "-s", store_url], env=BREAK
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    [line] = error_lines(result.output)
    assert f"global position {later})" in line
    assert f"the batch was rolled back: the live tables stay at position {head}" in line


def test_a_module_failing_on_import_is_one_line_naming_it(store_url: str) -> None:
    done = run_cli("projections", "status", "-m", "tests.projections.broken_module", store_url=store_url)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert error_lines(done.stderr) == [
        "error: cannot import projection module 'tests.projections.broken_module': "
        "RuntimeError: the settings file is missing"
    ]


def test_a_resumed_rebuild_rates_only_this_runs_events_and_shows_an_eta(store_factory: StoreFactory) -> None:
    store = store_factory()
    append_deposits(store, streams=5, per_stream=20)  # 100 events
    counts = Counts(store)
    counts.ensure()

    class Interrupted(Exception):
        pass

    def interrupt_at_60(done: int, total: int) -> None:
        if done >= 60:
            raise Interrupted

    with pytest.raises(Interrupted):
        rebuild(counts, batch_size=10, progress=interrupt_at_60)
    lines: list[tuple[int, float, str]] = []  # (events done this run, seconds since the first report, bar)
    first_report: float | None = None
    with _progress("rebuild counts", Console(file=io.StringIO())) as bar:

        def report(done: int, total: int) -> None:
            nonlocal first_report
            bar(done, total)
            if first_report is None:  # the resumed run's first report: 60 events already done
                first_report = time.monotonic()  # the bar's clock started just before this
            else:
                lines.append((done - 60, time.monotonic() - first_report, bar.line()))
            time.sleep(0.05)  # a slow batch: this run's true rate is at most 5 events / 0.05 s

        result = rebuild(counts, batch_size=5, progress=report)
    assert result.resumed and result.events_applied == 40
    this_run, seconds, line = lines[0]  # after the first batch of the resumed run
    assert this_run == 5 and "65/100" in line
    shown = re.search(r"([\d,]+) ev/s", line)
    assert shown is not None
    # At most this run's events over at least this run's time; counting the 60 events done before
    # the interruption would show 13 times that.
    assert int(shown.group(1).replace(",", "")) <= this_run / seconds * 1.05, line
    assert re.search(r"eta \d+:\d\d:\d\d", line) and "-:--:--" not in line, line  # an ETA from batch 1


def test_as_of_past_the_head_is_built_to_the_head_and_labelled_by_it(
    store: EventStore, store_url: str, head: int
) -> None:
    app = standalone_app()
    beyond = head + 1000
    result = runner.invoke(
        app, ["projections", "rebuild", "carts_by_status", "--as-of", str(beyond), "-s", store_url]
    )
    assert result.exit_code == 0, result.output
    assert f"as of {beyond}, past the log's head: built up to the head (log position {head})" in result.output
    assert f"carts_by_status__carts__scratch_asof_p{head}" in result.output
    assert scratch_labels(CartsByStatus(store)) == [f"asof_p{head}"]


def test_as_of_a_time_before_the_first_event_shows_0_of_0(store: EventStore, store_url: str) -> None:
    before = (store.read_all()[0].recorded_at - timedelta(days=1)).isoformat()
    result = runner.invoke(
        standalone_app(), ["projections", "rebuild", "carts_by_status", "--as-of", before, "-s", store_url]
    )
    assert result.exit_code == 0, result.output
    assert "(log position 0)" in result.output
    assert "0/0" in result.stderr and "0/1" not in result.stderr


@pytest.mark.timeout(60)
def test_run_reports_a_failing_handler_in_one_line_and_keeps_running(
    store: EventStore, store_url: str
) -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chronik.cli.projections",
            "projections",
            "run",
            "checkout_ledger",
            "-m",
            SAMPLES,
        ],
        env={**os.environ, "CHRONIK_STORE": store_url, **BREAK},
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # the first batch fails on the checkout; the runner retries
        assert process.poll() is None  # still running: a poison event holds the projection back
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "on event CheckedOut (stream 'cart-0', version 10" in stderr
    assert "the batch was rolled back: the live tables stay at position 0" in stderr
