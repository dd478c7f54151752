"""The back office in a real browser (Debian's chromium): what staff do all day, by keyboard too.

Set SCREENSHOT_DIR (e.g. docs/screenshots) to save the dashboard, the list and the order page:
    SCREENSHOT_DIR=docs/screenshots python -m pytest tests/admin/test_browser.py
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect, sync_playwright

from tests.fixtures.backoffice import PATH, Card, load_backoffice_orders
from tracking.models import CardOrder, OrderAcknowledgement

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "boss-password-1"
WIDTH = 1280  # the narrowest screen the back office must read well on

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(scope="module")
def chromium():
    """One browser for the module; Django may run sync code while playwright's loop runs."""

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def orders(issuer) -> dict[str, int]:
    return load_backoffice_orders(issuer)


@pytest.fixture
def page(chromium, live_server, orders):
    """A logged-in staff session on the live server, at 1280 px wide."""
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    context = chromium.new_context(
        base_url=live_server.url,
        viewport={"width": WIDTH, "height": 900},
        accept_downloads=True,
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def screenshot(page, name: str, *, width: int = 1440, full_page: bool = True) -> None:
    """Save the page under SCREENSHOT_DIR; 1440 px shows the sidebar (folded at 1280 and below)."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": 1000})
    # From the top, with nothing focused: sticky panels sit where a reader first sees them.
    page.evaluate("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
    page.wait_for_timeout(300)
    page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)
    page.set_viewport_size({"width": WIDTH, "height": 900})


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= WIDTH


# Every visible control a keyboard can reach must have a name a screen reader can say.
UNLABELLED_CONTROLS = """
() => [...document.querySelectorAll('input, select, textarea, button, a[href], summary')]
    .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
    .filter(el => {
        const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
            || el.getAttribute('title') || (el.labels && el.labels.length)
            || (el.textContent || '').trim();
        return !named;
    })
    .map(el => el.outerHTML.slice(0, 120))
"""


def unlabelled_controls(page) -> list[str]:
    return page.evaluate(UNLABELLED_CONTROLS)


def test_dashboard_find_a_card_by_tracking_number_and_read_its_timeline(page, orders):
    # The dashboard: figures, charts drawn by Chart.js from the local static files.
    assert page.get_by_role("heading", name="Orders per production stage").is_visible()
    assert page.locator("canvas.chart").count() == 2
    assert page.evaluate("typeof Chart") == "function"
    assert page.evaluate("Chart.getChart(document.querySelector('canvas.chart')) !== undefined")
    assert fits_the_width(page)
    assert unlabelled_controls(page) == []
    screenshot(page, "dashboard")

    # "/" focuses the search box; a tracking number goes straight to its order.
    page.goto("/admin/tracking/cardorder/")
    page.keyboard.press("/")
    search = page.get_by_label("Card id, operation id, issuer request id or tracking number")
    assert search.evaluate("el => el === document.activeElement")
    search.fill("JD014600006281234567")
    search.press("Enter")
    page.wait_for_url(f"**/cardorder/{orders['stale']}/change/")

    # Both lanes, and the step that arrived late marked stale, in words.
    production = page.locator('[data-lane="production"]')
    shipment = page.locator('[data-lane="shipment"]')
    assert production.count() == 6 and shipment.count() == 1
    stale = page.locator('tr[data-outcome="stale"]')
    assert stale.get_by_text("Stale · out of order").is_visible()
    assert stale.locator(".bo-badge", has_text="CARD_PROD_READY").is_visible()
    assert shipment.first.get_by_text("DHL Express").is_visible()

    # The raw JSON is one keypress away.
    summary = stale.get_by_text("Raw JSON")
    summary.focus()
    page.keyboard.press("Enter")
    assert stale.locator("pre").is_visible()
    assert '"status": "CARD_PROD_READY"' in stale.locator("pre").inner_text()
    assert fits_the_width(page)
    assert unlabelled_controls(page) == []
    # At 1280 px: a full-page capture of a long page would repeat the fixed sidebar.
    screenshot(page, "order", width=WIDTH)


def test_filter_exceptions_acknowledge_one_and_export_the_list(page, orders):
    page.goto("/admin/tracking/cardorder/")
    screenshot(page, "orders", full_page=False)  # the list's footer sticks to the window

    # The filter panel: labelled native selects, applied with a button.
    page.get_by_role("button", name="Filters").click()
    assert unlabelled_controls(page) == []
    page.get_by_label("By queue").select_option("exceptions")
    page.get_by_role("button", name="Apply Filters").click()
    page.wait_for_url("**queue=exceptions**")
    expected = {
        CardOrder.objects.get(pk=orders[name]).card_id
        for name in ("exception", "conflict", "unknown")
    }
    shown = set(page.locator("#result_list a.bo-link.font-semibold").all_inner_texts())
    assert shown == expected
    assert fits_the_width(page)

    # The export holds the rows of the list as filtered.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export this list as CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert {row["Card id"] for row in rows} == expected
    failed = next(row for row in rows if row["Card id"] == "card-000999")
    assert failed["D1 error code"] == "INVALID_CARD_DATA"

    # Acknowledge the data exception with a note: it leaves the list.
    page.get_by_role("link", name="card-000999").click()
    page.get_by_label("Acknowledge the exception").fill("Re-ordered with a shorter name.")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_text("left the Exceptions list")).to_be_visible()
    assert OrderAcknowledgement.objects.filter(order_id=orders["exception"]).exists()
    page.goto("/admin/tracking/cardorder/?queue=exceptions")
    assert page.get_by_role("link", name="card-000999").count() == 0


def test_reconcile_now_from_the_order_page(page, orders, issuer, d1):
    gap = CardOrder.objects.get(pk=orders["gap"])
    card = Card(gap.card_id, gap.operation_id, gap.input_file_name, gap.issuer_request_id)
    d1.truth_record(issuer_id=issuer.issuer_id, items=[card.item(step) for step in PATH])
    page.goto(f"/admin/tracking/cardorder/{gap.pk}/change/")
    assert page.get_by_text("No call to D1 recorded for this order.").is_visible()

    page.get_by_role("button", name="Reconcile now").click()

    expect(page.get_by_text("Asked D1 for this order: Changed the order.")).to_be_visible()
    attempts = page.get_by_role("table", name="Calls to D1's on-demand API for this order")
    expect(attempts.get_by_text("Changed the order")).to_be_visible()
    answer = page.locator('[data-lane="production"]', has_text="On-demand (reconciliation)")
    expect(answer.locator(".bo-badge", has_text="CARD_PROD_DONE")).to_be_visible()
    expect(page.locator("dd", has_text="CARD_PROD_DONE").first).to_be_visible()
