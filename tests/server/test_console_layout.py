"""The console on a phone, and what its pages show (issue #17.10), in Debian's Chromium.

Before: at 390 px the sidebar took half the screen; at 1400 px the live tail's Recorded column was
cut off; "Loading…" stayed above "Stream not found"; time travel and the live tail showed raw
`null`; the bank page wrote money as `16,850 €`, `15229.00 €` and `216000 cents`; the projections
page said "Live v2 / Code v1" without a word on what either is; a negative quantity in the cart's
form answered "the request does not match the API schema". Screenshots: test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.server.conftest import LiveServer
from tests.server.test_console_browser import browser, demo, opened_page, shot  # noqa: F401 - fixtures

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:  # noqa: F811
    with opened_page(browser, viewport=PHONE, is_mobile=True, has_touch=True) as opened:
        yield opened


@pytest.fixture
def wide(browser: Browser) -> Iterator[Page]:  # noqa: F811
    with opened_page(browser, viewport={"width": 1400, "height": 900}) as opened:
        yield opened


def page_width(page: Page) -> int:
    """How wide the document is: wider than the screen means the reader scrolls sideways."""
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width


def test_on_a_phone_the_page_has_the_width_and_the_navigation_is_a_menu(
    demo: LiveServer,  # noqa: F811
    phone: Page,
) -> None:
    phone.goto(demo.url + "/")
    expect(phone.get_by_test_id("stream-table")).to_be_visible()
    sidebar = phone.locator("#sidebar")
    expect(sidebar).to_be_hidden()
    main = phone.locator("#main").bounding_box()
    assert main is not None and main["width"] >= PHONE["width"] - 1  # the whole width is the page's
    assert page_width(phone) <= PHONE["width"]
    shot(phone, "phone-01-streams")
    toggle = phone.get_by_test_id("nav-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    shot(phone, "phone-02-menu")
    sidebar.get_by_role("link", name="Live tail").click()
    expect(phone.get_by_test_id("tail-table")).to_be_visible()
    expect(sidebar).to_be_hidden()  # it closes once a page is chosen
    expect(toggle).to_have_attribute("aria-expanded", "false")


@pytest.mark.parametrize(
    ("name", "path", "ready"),
    [
        ("stream", "#/streams/cart-alice-1", "travel-state"),
        ("live", "#/live", "tail-table"),
        ("groups", "#/groups", "group-cards"),
        ("projections", "#/projections", "projection-table"),
        ("cart", "#/apps/cart", "product-table"),
        ("bank", "#/apps/bank", "account-table"),
    ],
)
def test_every_page_fits_a_phone(
    demo: LiveServer,  # noqa: F811
    phone: Page,
    name: str,
    path: str,
    ready: str,
) -> None:
    phone.goto(f"{demo.url}/{path}")
    expect(phone.get_by_test_id(ready).first).to_be_visible()
    assert page_width(phone) <= PHONE["width"], f"the {name} page scrolls sideways"
    shot(phone, f"phone-{name}")


def test_the_live_tails_recorded_column_stays_in_view_at_1400px(
    demo: LiveServer,  # noqa: F811
    wide: Page,
) -> None:
    with demo.client() as http:
        long = {"transfer_id": "demo-rent-share", "token": "x" * 300}  # no place to break a line
        http.post("/api/streams/tail-1/events", json={"events": [{"type": "Noted", "data": long}]})
    wide.goto(demo.url + "/#/live")
    row = wide.get_by_test_id("tail-table").locator("tr[data-position]", has_text="tail-1").first
    expect(row).to_be_visible()
    recorded = row.locator("td").last.bounding_box()
    frame = wide.locator(".table-wrap", has=wide.get_by_test_id("tail-table")).bounding_box()
    assert recorded is not None and frame is not None
    assert recorded["x"] + recorded["width"] <= frame["x"] + frame["width"] + 1  # not cut off
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", row.locator("td").last.inner_text())
    shot(wide, "20-live-tail-wide")


def test_a_stream_that_is_not_there_says_so_and_nothing_else(
    demo: LiveServer,  # noqa: F811
    wide: Page,
) -> None:
    wide.goto(demo.url + "/#/streams/nope-1")
    expect(wide.get_by_role("alert")).to_contain_text("Stream not found")
    expect(wide.get_by_text("Loading…")).to_have_count(0)
    expect(wide.locator(".page-head .sub")).to_have_text("No such stream")


def test_no_raw_null_in_time_travel_or_the_live_tail(
    demo: LiveServer,  # noqa: F811
    wide: Page,
) -> None:
    wide.goto(demo.url + "/#/streams/cart-bob-1")  # an open cart: it has no total yet
    state = wide.get_by_test_id("travel-state")
    expect(state).to_contain_text('"items"')
    expect(wide.get_by_test_id("travel-state-empty")).to_contain_text("no value:")
    assert re.search(r"\bnull\b", wide.get_by_test_id("travel-state-box").inner_text()) is None
    with demo.client() as http:
        http.post(
            "/api/streams/nulls-1/events",
            json={"events": [{"type": "Measured", "data": {"reading": None, "unit": "kg"}}]},
        )
    wide.goto(demo.url + "/#/live")
    row = wide.get_by_test_id("tail-table").locator("tr[data-position]", has_text="nulls-1").first
    expect(row).to_contain_text("reading: \u2013 · unit: kg")  # an en dash, as elsewhere for no value
    assert re.search(r"\bnull\b", wide.get_by_test_id("tail-table").inner_text()) is None


def test_money_is_written_one_way_on_the_bank_page(
    demo: LiveServer,  # noqa: F811
    wide: Page,
) -> None:
    wide.goto(demo.url + "/#/apps/bank")
    transfers = wide.get_by_test_id("transfer-table")
    expect(transfers.locator("tr[data-transfer='demo-too-much']")).to_contain_text("rejected")
    expect(wide.get_by_test_id("balance-chart")).to_be_visible()
    shot(wide, "21-bank-money")
    text = wide.locator("#main").inner_text()
    ticks = wide.get_by_test_id("balance-chart").locator("text.tick").all_text_contents()
    chart_ticks = [tick for tick in ticks if not re.match(r"\d{4}-\d\d-\d\d", tick)]  # the y axis's
    amounts = re.findall(r"-?€[\d,]+\.\d\d", text)
    assert len(amounts) > 20
    assert "cents" not in text  # the rejected transfer's reason is written in euros too
    old_ways = r"\d[ \u00a0]?€|EUR"  # `15229.00 €`, `16,850 €`: the amount before the sign
    assert re.search(old_ways, text) is None, re.findall(rf".{{20}}(?:{old_ways}).{{5}}", text)
    assert chart_ticks and all(re.fullmatch(r"-?€[\d,]+\.\d\d", tick) for tick in chart_ticks), chart_ticks
    expect(transfers.locator("tr[data-transfer='demo-too-much']")).to_contain_text("holds €")


def test_the_projections_page_says_what_live_tables_and_code_are(
    demo: LiveServer,  # noqa: F811
    wide: Page,
) -> None:
    wide.goto(demo.url + "/#/projections")
    row = wide.locator("tr[data-projection='carts_by_status']")
    expect(row.get_by_test_id("live-set")).to_have_text("set 1")
    header = wide.get_by_test_id("projection-table").locator("th", has_text="Live tables")
    expect(header).to_have_attribute("title", re.compile("A rebuild fills a new set"))
    legend = wide.get_by_test_id("projection-legend")
    expect(legend).to_contain_text("Live tables: the set of tables that answers reads")
    expect(legend).to_contain_text("Code: the version the projection's code declares")
    shot(wide, "22-projections-explained")


def test_a_negative_quantity_shows_the_servers_message_for_the_field(
    demo: LiveServer,  # noqa: F811
    wide: Page,
) -> None:
    wide.goto(demo.url + "/#/apps/cart")
    expect(wide.get_by_test_id("product-table").locator("tbody tr")).to_have_count(5)
    wide.get_by_test_id("cart-id").fill("minus")
    wide.get_by_label("quantity").fill("-3")
    wide.get_by_test_id("cart-add").click()
    expect(wide.locator(".toast")).to_have_text("quantity: Input should be greater than or equal to 1")
    shot(wide, "23-cart-negative-quantity")
