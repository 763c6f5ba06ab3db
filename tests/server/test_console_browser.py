"""The web console in a real browser: Debian's Chromium driven by Playwright, against a real uvicorn.

Every page is opened and clicked through; the time-travel slider is dragged with the mouse and
the state it shows is checked against the events. Screenshots go to test-artifacts/screenshots/.
Without /usr/bin/chromium these tests skip (fail under CHRONIK_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronik.examples.money import euros
from chronik.examples.video import make_sample_video
from chronik.server.demo import RECEIPTS_GROUP, start_demo
from chronik.server.keys import keyring_for
from tests.conftest import REQUIRE_SERVICES
from tests.server.conftest import LiveServer, ServerFactory

CHROMIUM = Path(os.environ.get("CHRONIK_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    reason = f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if REQUIRE_SERVICES:
        pytest.fail(f"CHRONIK_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextlib.contextmanager
def opened_page(browser: Browser, **context_options: Any) -> Iterator[Page]:
    """A page in a fresh browser context; at the end, no error may have been logged by the console."""
    context = browser.new_context(**context_options)
    opened = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # 4xx answers are part of the API (a stream with no aggregate, a missing key): the page handles them
        if message.type == "error" and "responded with a status of 4" not in message.text:
            problems.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    assert problems == [], f"the console logged errors: {problems}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened_page(browser, viewport={"width": 1400, "height": 900}) as opened:
        yield opened


@pytest.fixture
def demo(make_server: ServerFactory) -> LiveServer:
    """The demo's seed and workers, with the shopper idle so that what a test sees is deterministic."""
    live = make_server()
    start_demo(live.state, interval=3600, lease_ttl=3.0, bank_interval=3600, video=False)
    with live.client() as http:
        wait_for(lambda: http.get(f"/api/groups/{RECEIPTS_GROUP}").json()["total_lag"] == 0)
        wait_for(lambda: http.get("/api/projections/carts_by_status").json()["lag"] == 0)
    return live


@pytest.fixture
def pipeline(make_server: ServerFactory) -> LiveServer:
    """The demo with its video workers (2 s per job, so "processing" can be seen) and an idle clerk."""
    live = make_server()
    start_demo(
        live.state,
        interval=3600,
        lease_ttl=3.0,
        bank_interval=3600,
        upload_interval=3600,
        transcode_pause=2.0,
    )
    return live


def wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def shown_json(within: Page | Locator, testid: str) -> Any:
    return json.loads(within.get_by_test_id(testid).inner_text())


def test_streams_page_lists_and_searches(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/")
    table = page.get_by_test_id("stream-table")
    expect(table.locator("tr[data-stream='cart-alice-1']")).to_be_visible()
    expect(page.get_by_test_id("head-position")).to_contain_text("log head:")
    page.get_by_test_id("stream-search").fill("product-")
    expect(table.locator("tbody tr")).to_have_count(5)
    expect(table.locator("tr[data-stream='cart-alice-1']")).to_have_count(0)
    shot(page, "01-streams-search")
    page.get_by_test_id("stream-search").fill("nothing-like-this")
    expect(page.get_by_text("No stream starts with")).to_be_visible()


def test_stream_timeline_and_time_travel_slider(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/#/streams?q=cart-alice")
    page.locator("tr[data-stream='cart-alice-1']").click()
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator("li")).to_have_count(4)
    first = timeline.locator("li").first
    first.locator("summary").click()
    expect(first.get_by_test_id("event-data")).to_be_visible()
    assert shown_json(first, "event-data") == {"sku": "green-tea", "quantity": 2}
    assert shown_json(first, "event-metadata")["actor"] == "alice"
    expect(page.get_by_test_id("travel-label")).to_contain_text("As of version 3")
    expect(page.get_by_test_id("travel-state")).to_contain_text('"checked_out": true')

    # Drag the slider's thumb with the mouse all the way left: version 0.
    slider = page.get_by_test_id("travel-slider")
    box = slider.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] - 4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, y, steps=5)
    page.mouse.move(box["x"] + 2, y, steps=5)
    page.mouse.up()
    assert slider.input_value() == "0"
    expect(page.get_by_test_id("travel-label")).to_have_text("As of version 0 (ItemAdded)")
    wait_for(lambda: shown_json(page, "travel-state")["items"] == {"green-tea": 2})
    assert shown_json(page, "travel-state")["checked_out"] is False
    expect(timeline.locator("li.future")).to_have_count(3)
    shot(page, "02-stream-time-travel-v0")

    # One step right with the mouse: version 1 adds the mug.
    page.mouse.click(box["x"] + box["width"] / 3, y)
    assert slider.input_value() == "1"
    expect(page.get_by_test_id("travel-label")).to_have_text("As of version 1 (ItemAdded)")
    wait_for(lambda: shown_json(page, "travel-state")["items"] == {"green-tea": 2, "mug": 1})

    # The same point by recorded time.
    page.get_by_test_id("travel-mode").select_option("as_of")
    expect(page.get_by_test_id("travel-label")).to_contain_text("(recorded)")
    wait_for(lambda: shown_json(page, "travel-state")["items"] == {"green-tea": 2, "mug": 1})
    shot(page, "03-stream-time-travel-by-time")


def test_a_stream_without_an_aggregate_still_shows_its_events(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/#/streams/receipt-alice-1")
    expect(page.get_by_test_id("timeline").locator("li")).to_have_count(1)
    expect(page.get_by_test_id("travel-no-aggregate")).to_contain_text("receipt")


def test_live_tail_shows_new_events_as_they_are_written(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/#/live")
    table = page.get_by_test_id("tail-table")
    expect(table.locator("tbody tr").first).to_be_visible()
    expect(page.get_by_test_id("tail-status")).to_have_text("live")
    with demo.client() as http:
        http.post(
            "/api/streams/browser-1/events", json={"events": [{"type": "WavedAt", "data": {"hello": "tail"}}]}
        )
    newest = table.locator("tbody tr").first
    expect(newest).to_contain_text("browser-1")
    expect(page.get_by_test_id("tail-rate").locator("polyline")).to_have_count(1)
    expect(newest).to_contain_text("WavedAt")
    shot(page, "04-live-tail")
    page.get_by_test_id("tail-pause").click()
    expect(page.get_by_test_id("tail-status")).to_have_text("paused")


def test_consumer_groups_and_replaying_a_parked_event(demo: LiveServer, page: Page) -> None:
    printer = demo.state.demo["printer"]
    printer.jammed = True
    with demo.client() as http:
        http.post("/api/cart/carts/jam/items", json={"sku": "mug"})
        http.post("/api/cart/carts/jam/checkout")
        wait_for(lambda: http.get(f"/api/groups/{RECEIPTS_GROUP}").json()["parked"] == 1)
    printer.jammed = False
    page.goto(demo.url + "/#/groups")
    card = page.locator(f"[data-group='{RECEIPTS_GROUP}']")
    expect(card).to_contain_text("1 parked")
    shot(page, "05-groups")
    card.click()
    expect(page.get_by_test_id("partition-table").locator("tbody tr")).to_have_count(4)
    parked = page.get_by_test_id("parked-table")
    expect(parked.locator("tbody tr")).to_have_count(1)
    expect(parked).to_contain_text("cart-jam")
    expect(parked).to_contain_text("printer jammed")
    shot(page, "06-group-parked")
    parked.get_by_role("button", name="Replay").click()
    expect(page.get_by_text("Nothing parked.")).to_be_visible()
    expect(page.get_by_test_id("group-parked")).to_have_text("0")
    with demo.client() as http:
        assert http.get("/api/streams/receipt-jam/events").status_code == 200
    shot(page, "07-group-replayed")


def test_projections_rebuild_with_progress_and_rows(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/#/projections")
    row = page.locator("tr[data-projection='carts_by_status']")
    expect(row).to_contain_text("current")
    page.get_by_test_id("rebuild-carts_by_status").click()
    expect(row.get_by_test_id("rebuild-done")).to_have_text("rebuilt → set 2", timeout=20_000)
    row.get_by_role("button", name="carts", exact=True).click()
    rows = page.get_by_test_id("projection-rows")
    expect(rows).to_contain_text("alice-1")
    expect(rows.locator("th").first).to_have_text("cart_id")
    shot(page, "08-projections")


def test_cart_page_shops_and_checks_out(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/#/apps/cart")
    expect(page.locator(".sidebar a[data-page='apps/cart']")).to_have_class("active")
    expect(page.get_by_test_id("product-table").locator("tbody tr")).to_have_count(5)
    page.get_by_test_id("cart-id").fill("browser")
    page.get_by_test_id("cart-sku").select_option("teapot")
    page.get_by_test_id("cart-add").click()
    cart_row = page.locator("tr[data-cart='browser']")
    expect(cart_row).to_contain_text("open")
    shot(page, "09-cart")
    cart_row.get_by_test_id("cart-checkout").click()
    expect(cart_row).to_contain_text("checked out")
    expect(cart_row).to_contain_text("€39.00")


def test_with_keys_the_console_asks_for_one(make_server: ServerFactory, page: Page) -> None:
    live = make_server()
    _, token = keyring_for(live.store).create("browser", ["read"], now=live.store.clock())
    live.state.forget_key_cache()
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/api/streams").status_code == 200
    page.goto(live.url + "/")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    shot(page, "10-api-key-dialog")
    page.locator("#key-input").fill(token)
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_text("The log is empty.")).to_be_visible()


def test_api_reference_page_lists_the_operations(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/#/api")
    operations = page.get_by_test_id("api-operations")
    expect(operations.first).to_be_visible()
    expect(page.get_by_text("/api/log/subscribe", exact=True)).to_be_visible()
    expect(page.get_by_text("Append to several streams atomically")).to_be_visible()
    shot(page, "11-api-reference")


def test_the_stream_page_notices_new_events(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url + "/#/streams/cart-bob-1")
    expect(page.get_by_test_id("timeline").locator("li")).to_have_count(2)
    with demo.client() as http:
        http.post("/api/cart/carts/bob-1/items", json={"sku": "mug"})
    updates = page.get_by_test_id("stream-updates")
    expect(updates).to_contain_text("1 new event in this stream", timeout=10_000)
    updates.get_by_role("link", name="Show them").click()
    expect(page.get_by_test_id("timeline").locator("li")).to_have_count(3)
    expect(page.get_by_test_id("travel-label")).to_have_text("As of version 2 (ItemAdded)")


def test_bank_page_shows_accounts_a_balance_chart_and_moves_money(demo: LiveServer, page: Page) -> None:
    with demo.client() as http:
        wait_for(
            lambda: http.get("/api/bank/transfers/demo-dinner").json()["transfer"]["status"] == "completed"
        )
        lines = http.get("/api/bank/accounts/carol/statement").json()["lines"]
    page.goto(demo.url + "/#/apps/bank")
    expect(page.locator(".sidebar a[data-page='apps/bank']")).to_have_class("active")
    accounts = page.get_by_test_id("account-table")
    expect(accounts.locator("tbody tr")).to_have_count(5)
    expect(page.get_by_test_id("books-status")).to_have_text("books balance")
    accounts.locator("tr[data-account='carol']").click()
    chart = page.get_by_test_id("balance-chart")
    expect(chart).to_have_attribute("data-points", str(len(lines)))
    expect(chart.locator("circle.point")).to_have_count(len(lines))
    expect(chart.locator("polyline.series")).to_have_count(1)
    expect(page.get_by_test_id("account-balance")).to_have_text(euros(lines[-1]["balance_cents"]))
    statement = page.get_by_test_id("statement-table")
    expect(statement.locator("tbody tr")).to_have_count(12)  # the newest; the rest on request
    page.get_by_role("button", name=f"Show all {len(lines)} entries").click()
    expect(statement.locator("tbody tr")).to_have_count(len(lines))
    expect(statement.locator("tr", has_text="cash deposit at the branch")).to_contain_text("entered late")

    # The time machine: carol's balance at the end of her first month, by business time.
    first_month_end = lines[2]["occurred_at"][:19]
    page.get_by_test_id("asof-time").fill(first_month_end)
    page.get_by_test_id("asof-go").click()
    expect(page.get_by_test_id("asof-result")).to_contain_text(euros(lines[2]["balance_cents"]))
    expect(page.get_by_test_id("asof-result")).to_contain_text("business time")
    shot(page, "13-bank-accounts")

    # A deposit through the form: the balance and the chart follow.
    page.get_by_test_id("money-account").select_option("carol")
    page.get_by_test_id("money-amount").fill("12.34")
    page.get_by_test_id("deposit").click()
    expect(page.get_by_test_id("account-balance")).to_have_text(euros(lines[-1]["balance_cents"] + 1234))
    expect(chart).to_have_attribute("data-points", str(len(lines) + 1))
    expect(chart.locator("circle.point")).to_have_count(len(lines) + 1)

    # A transfer: initiated by the page, completed by the process manager, its trail one click away.
    page.get_by_test_id("transfer-from").select_option("alice")
    page.get_by_test_id("transfer-to").select_option("bob")
    page.get_by_test_id("transfer-amount").fill("25")
    page.get_by_test_id("transfer-send").click()
    newest = page.get_by_test_id("transfer-table").locator("tbody tr").first
    expect(newest).to_contain_text("alice → bob")
    expect(newest).to_contain_text("completed", timeout=15_000)
    newest.click()
    trail = page.get_by_test_id("transfer-trail")
    expect(trail).to_contain_text("TransferDebited")
    expect(trail).to_contain_text("TransferCompleted")
    shot(page, "14-bank-transfer-trail")


def test_video_board_shows_thumbnails_and_statuses_changing(
    pipeline: LiveServer, page: Page, tmp_path: Path
) -> None:
    page.goto(pipeline.url + "/#/apps/video")
    board = page.get_by_test_id("video-board")
    expect(board.locator(".video-card")).to_have_count(5)
    # the seeded clips go from queued through processing to ready on their own, thumbnails appearing
    expect(board.locator(".video-card[data-status='succeeded']")).to_have_count(4, timeout=40_000)
    thumbnails = board.locator("img[data-testid='video-thumbnail']")
    expect(thumbnails).to_have_count(4)
    wait_for(lambda: all(t.evaluate("img => img.complete && img.naturalWidth > 0") for t in thumbnails.all()))
    assert thumbnails.first.evaluate("img => img.naturalHeight") == 240  # the source's first frame
    failed = board.locator(".video-card", has_text="holiday.mp4")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(page.get_by_test_id("count-succeeded")).to_have_text("4")
    # only cards (and at most a "show all" button) on the board: no stray text such as "null"
    assert board.evaluate("b => [...b.childNodes].every(n => n.nodeType === Node.ELEMENT_NODE)")
    shot(page, "12-video-board")

    # Upload a clip of one's own: queued or processing first, then ready with its thumbnail.
    clip = make_sample_video(tmp_path / "my-clip.mp4", seconds=1.0, seed=42)
    page.get_by_test_id("video-file").set_input_files(str(clip))
    page.get_by_test_id("video-upload").click()
    mine = board.locator(".video-card", has_text="my-clip.mp4")
    expect(mine).to_have_attribute("data-status", re.compile("uploaded|processing"))
    expect(mine).to_have_attribute("data-status", "processing", timeout=20_000)
    expect(mine.get_by_test_id("video-status")).to_have_text("processing")
    expect(mine).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(mine.get_by_test_id("video-thumbnail")).to_be_visible()
    panel = page.get_by_test_id("video-panel")
    expect(panel).to_contain_text("my-clip.mp4")
    expect(page.get_by_test_id("video-timeline")).to_contain_text("VideoProcessingSucceeded")
    player = page.get_by_test_id("video-player")
    wait_for(lambda: player.evaluate("v => v.readyState >= 1 && v.duration > 0.5"))
    shot(page, "15-video-detail")

    # Retry the parked one: it leaves "failed", is tried again, and is parked again (still not a video).
    failed.click()
    expect(panel).to_contain_text("holiday.mp4")
    failed.get_by_test_id("video-retry").click()
    expect(failed).not_to_have_attribute("data-status", "failed")
    expect(failed).to_have_attribute("data-status", "failed", timeout=30_000)
    expect(page.get_by_test_id("video-timeline")).to_contain_text("VideoRetryRequested")
    shot(page, "16-video-retried")


def test_thumbnails_load_behind_an_api_key(make_server: ServerFactory, page: Page) -> None:
    """With keys, an <img src> could not send one: the page fetches files with it and shows blob: URLs."""
    live = make_server()
    _, token = keyring_for(live.store).create("viewer", ["read", "append"], now=live.store.clock())
    live.state.forget_key_cache()
    start_demo(
        live.state, interval=3600, lease_ttl=3.0, bank_interval=3600, upload_interval=3600, transcode_pause=0
    )
    with live.client(token) as http:
        wait_for(lambda: http.get("/api/video/board").json()["counts"].get("succeeded", 0) == 4, 40)
        thumbnail = http.get("/api/video/board").json()["videos"][0]["thumbnail_url"]
    with live.client() as anonymous:
        assert anonymous.get(thumbnail).status_code == 401
    page.add_init_script(f"localStorage.setItem('chronik.apiKey', {json.dumps(token)})")
    page.goto(live.url + "/#/apps/video")
    thumbnails = page.get_by_test_id("video-board").locator("img[data-testid='video-thumbnail']")
    expect(thumbnails).to_have_count(4)
    wait_for(lambda: all(t.evaluate("img => img.complete && img.naturalWidth > 0") for t in thumbnails.all()))
    assert (thumbnails.first.get_attribute("src") or "").startswith("blob:")
    expect(page.locator("#key-dialog")).not_to_be_visible()
