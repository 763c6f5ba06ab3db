"""The projection and audit commands, through typer's CliRunner and a real subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chronik import NewEvent
from chronik.cli.projections import projections_app, standalone_app
from chronik.store import open_store

runner = CliRunner()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
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
    store.close()
    return url


def test_rebuild_and_status(store_url: str) -> None:
    result = runner.invoke(
        projections_app, ["rebuild", "carts_by_status", "--store", store_url, "--batch-size", "7"]
    )
    assert result.exit_code == 0, result.output
    assert "carts_by_status: version 2 is live at position 31" in result.output
    status = runner.invoke(projections_app, ["status", "--store", store_url])
    assert status.exit_code == 0, status.output
    line = next(line for line in status.output.splitlines() if "carts_by_status" in line)
    assert "v2" in line and "31" in line
    assert "product_prices" in status.output and "not built" in status.output


def test_rebuild_as_of_leaves_live_alone(store_url: str) -> None:
    app = standalone_app()
    result = runner.invoke(
        app, ["projections", "rebuild", "carts_by_status", "--as-of", "5", "-s", store_url]
    )
    assert result.exit_code == 0, result.output
    assert "log position 5" in result.output and "carts_by_status__carts__scratch_asof_p5" in result.output
    bad = runner.invoke(
        app, ["projections", "rebuild", "carts_by_status", "--as-of", "last tuesday", "-s", store_url]
    )
    assert bad.exit_code == 2 and "neither a log position nor" in bad.output


def test_unknown_projection_and_missing_store_are_user_errors(store_url: str, tmp_path: Path) -> None:
    result = runner.invoke(projections_app, ["rebuild", "nope", "--store", store_url])
    assert result.exit_code == 2
    assert "no projection named 'nope'" in result.output and "carts_by_status" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(projections_app, ["status", "--store", f"sqlite:///{tmp_path / 'typo.db'}"])
    assert missing.exit_code == 2 and "no store at" in missing.output
    assert not (tmp_path / "typo.db").exists()


def test_reconcile_prints_the_corrupted_row_and_exits_1(store_url: str) -> None:
    app = standalone_app()
    assert runner.invoke(app, ["projections", "rebuild", "carts_by_status", "-s", store_url]).exit_code == 0
    clean = runner.invoke(app, ["reconcile", "carts_by_status", "-s", store_url])
    assert clean.exit_code == 0 and "match the log" in clean.output
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE carts_by_status__carts__v2 SET items = 99 WHERE cart_id = '1'")
    result = runner.invoke(app, ["reconcile", "carts_by_status", "-s", store_url])
    assert result.exit_code == 1, result.output
    assert "1 row(s) differ" in result.output
    assert "carts [cart_id='1'] differs: items: live 99 != rebuilt 10" in result.output


def test_trace_verify_and_seal(store_url: str) -> None:
    app = standalone_app()
    traced = runner.invoke(app, ["trace", "checkout-7", "-s", store_url])
    assert traced.exit_code == 0 and "CheckedOut" in traced.output and "cart-0" in traced.output
    assert runner.invoke(app, ["trace", "nothing", "-s", store_url]).exit_code == 1
    verified = runner.invoke(app, ["verify", "-s", store_url, "--seal-size", "10"])
    assert verified.exit_code == 0, verified.output
    assert "OK: 31 events in 3 streams; 0 seal(s) verified, 4 added" in verified.output
    assert "nothing to seal" in runner.invoke(app, ["seal", "-s", store_url]).output
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        raw.execute('UPDATE events SET data = \'{"sku":"gold"}\' WHERE global_position = 17')
    tampered = runner.invoke(app, ["verify", "-s", store_url])
    assert tampered.exit_code == 1
    assert "TAMPERED" in tampered.output and "stream 'cart-1'" in tampered.output
    assert "position 17" in tampered.output


def test_verify_in_a_real_process_names_the_deleted_event(store_url: str) -> None:
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM events WHERE global_position = 4")  # cart-0 version 1
    env = {**os.environ, "CHRONIK_STORE": store_url}
    done = subprocess.run(
        [sys.executable, "-m", "chronik.cli.projections", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "missing at stream 'cart-0', version 2, position 7" in done.stdout
    assert "Traceback" not in done.stderr
