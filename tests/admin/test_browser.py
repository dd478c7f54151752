"""The back office in a real browser (Debian's chromium): what staff do all day, by keyboard too.

Set SCREENSHOT_DIR (e.g. docs/screenshots) to save the dashboard, the list and the order page:
    SCREENSHOT_DIR=docs/screenshots python -m pytest tests/admin/test_browser.py
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from d1sandbox.testing import PROJECT_ROOT
from tests.fixtures.backoffice import PATH, Card, load_backoffice_orders, post_items
from tests.fixtures.browser import needs_chromium
from tests.fixtures.spec_examples import ISSUER_ID
from tracking.insight.refresh import insight_refresh
from tracking.models import CardOrder, Issuer, NotificationDelivery, OrderAcknowledgement
from tracking.services.audit import Actor
from tracking.services.reconcile import order_reconcile
from tracking.services.registration import Registration, orders_register

PASSWORD = "boss-password-1"
WIDTH, HEIGHT = 1366, 768  # the laptop screen the back office must work on

pytestmark = [
    needs_chromium,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def orders(issuer) -> dict[str, int]:
    return load_backoffice_orders(issuer)


@pytest.fixture
def page(chromium, live_server, orders):
    """A logged-in staff session on the live server, at 1366x768."""
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    context = chromium.new_context(
        base_url=live_server.url,
        viewport={"width": WIDTH, "height": HEIGHT},
        accept_downloads=True,
    )
    context.set_default_timeout(30_000)  # a shared CI machine can be slow
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def screenshot(page, name: str, *, width: int = WIDTH, full_page: bool = False) -> None:
    """Save the page under SCREENSHOT_DIR, as a 1366x768 laptop screen shows it."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": HEIGHT})
    # From the top, with nothing focused: sticky panels sit where a reader first sees them.
    page.evaluate("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
    page.wait_for_timeout(300)
    page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})


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
    assert page.get_by_role("heading", name="Open orders per production stage").is_visible()
    assert page.locator("canvas.chart").count() == 2
    assert page.evaluate("typeof Chart") == "function"
    assert page.evaluate("Chart.getChart(document.querySelector('canvas.chart')) !== undefined")
    assert fits_the_width(page)
    assert unlabelled_controls(page) == []

    # "/" focuses the search box; a tracking number goes straight to its order.
    page.goto("/admin/tracking/cardorder/")
    page.keyboard.press("/")
    search = page.get_by_role("searchbox")
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
    assert stale.locator('.bo-coded[data-code="CARD_PROD_READY"]').is_visible()
    assert stale.get_by_text("Ready to personalise").is_visible()
    assert shipment.first.get_by_text("DHL Express").is_visible()

    # The raw JSON is one keypress away.
    summary = stale.get_by_text("Raw JSON")
    summary.focus()
    page.keyboard.press("Enter")
    assert stale.locator("pre").is_visible()
    assert '"status": "CARD_PROD_READY"' in stale.locator("pre").inner_text()
    assert fits_the_width(page)
    assert unlabelled_controls(page) == []
    screenshot(page, "order")


def test_filter_exceptions_acknowledge_one_and_export_the_list(page, orders):
    page.goto("/admin/tracking/cardorder/")
    screenshot(page, "orders")

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

    # Acknowledge the data exception with a note: the page says so, the form is gone, and
    # "Next exception" leads on; the order leaves the list (and shows when asked for).
    page.get_by_role("link", name="card-000999").click()
    page.get_by_label("Acknowledge the exception").fill("Re-ordered with a shorter name.")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_text("left the Exceptions list")).to_be_visible()
    banner = page.locator("#acknowledged-banner")
    expect(banner).to_contain_text("Acknowledged by boss at")
    expect(banner).to_contain_text("UTC: Re-ordered with a shorter name.")
    assert page.get_by_label("Acknowledge the exception").count() == 0
    assert OrderAcknowledgement.objects.filter(order_id=orders["exception"]).exists()
    banner.get_by_role("link", name="Next exception").click()
    page.wait_for_url("**/change/")
    assert page.url.rstrip("/").split("/")[-2] != str(orders["exception"])
    expect(page.get_by_label("Acknowledge the exception")).to_be_visible()
    page.goto("/admin/tracking/cardorder/?queue=exceptions")
    assert page.get_by_role("link", name="card-000999").count() == 0
    page.get_by_role("link", name="Show acknowledged exceptions").click()
    expect(page.get_by_role("link", name="card-000999")).to_be_visible()


def test_reconcile_now_from_the_order_page(page, orders, issuer, d1):
    gap = CardOrder.objects.get(pk=orders["gap"])
    card = Card(gap.card_id, gap.operation_id, gap.input_file_name, gap.issuer_request_id)
    d1.truth_record(issuer_id=issuer.issuer_id, items=[card.item(step) for step in PATH])
    page.goto(f"/admin/tracking/cardorder/{gap.pk}/change/")
    assert page.get_by_text("No call to D1 recorded for this order.").is_visible()

    page.get_by_role("button", name="Ask D1 now").click()

    expect(page.get_by_text("Asked D1 about this order: Corrected the order.")).to_be_visible()
    attempts = page.get_by_role("table", name="Calls to D1's on-demand API for this order")
    expect(attempts.get_by_text("Corrected the order")).to_be_visible()
    expect(attempts.locator('.bo-coded[data-code="CARD_PROD_DONE"]')).to_be_visible()
    expect(attempts.get_by_text("HTTP 200")).to_be_visible()
    answer = page.locator('[data-lane="production"]', has_text="Asked of D1")
    expect(answer.locator('.bo-coded[data-code="CARD_PROD_DONE"]')).to_be_visible()


# ---------------------------------------------------------------------------- 1366 px lists

# Every list staff work from, and the column that says why a row is there.
LIST_PAGES = [
    ("/admin/tracking/cardorder/", "Flags"),
    ("/admin/tracking/cardorder/?queue=exceptions", "Flags"),
    ("/admin/tracking/cardorder/?queue=stuck", "Flags"),
    ("/admin/tracking/cardorder/?queue=reconcile", "Flags"),
    ("/admin/tracking/cardorder/?queue=cancelled", "Flags"),
    ("/admin/tracking/operationevent/", "What it did"),
    ("/admin/tracking/notificationdelivery/", "D1 error"),
    ("/admin/tracking/notificationdelivery/?refused=yes", "D1 error"),
    ("/admin/tracking/reconcileattempt/", "Result"),
]

TABLE_FITS = """
() => {
    const table = document.querySelector('#result_list');
    if (!table) return {missing: true};
    let box = table.parentElement, overflow = 0, where = "";
    // Only boxes that clip or scroll sideways can hide part of the table.
    for (; box && box !== document.body; box = box.parentElement) {
        if (getComputedStyle(box).overflowX === "visible") continue;
        if (box.scrollWidth - box.clientWidth > overflow) {
            overflow = box.scrollWidth - box.clientWidth;
            where = box.tagName + "#" + box.id + "." + box.className.slice(0, 80)
                + " " + box.scrollWidth + "/" + box.clientWidth + " table " + table.offsetWidth;
        }
    }
    return {
        right: table.getBoundingClientRect().right,
        overflow: overflow,
        where: where,
        page: document.documentElement.scrollWidth,
        viewport: window.innerWidth,
    };
}
"""

# Link text made of icon names (material symbols, snake case) that a screen reader would read.
ICON_WORDS_IN_LINKS = """
() => [...document.querySelectorAll('a[href]')]
    .filter(a => a.offsetParent !== null)
    .map(a => {
        const copy = a.cloneNode(true);
        copy.querySelectorAll('[aria-hidden="true"]').forEach(el => el.remove());
        return (a.getAttribute('aria-label') || copy.textContent || '').trim();
    })
    .filter(text => /(^|\\s)[a-z]+_[a-z_]+(\\s|$)/.test(text))
"""


def test_every_list_fits_1366_px_with_the_reason_column_in_view(page, orders, issuer, d1):
    gap = CardOrder.objects.get(pk=orders["gap"])
    card = Card(gap.card_id, gap.operation_id, gap.input_file_name, gap.issuer_request_id)
    d1.truth_record(issuer_id=issuer.issuer_id, items=[card.item(step) for step in PATH])
    order_reconcile(order_id=gap.pk)  # one attempt for the attempts list
    for url, reason_column in LIST_PAGES:
        page.goto(url)
        fit = page.evaluate(TABLE_FITS)
        assert not fit.get("missing"), url
        assert fit["overflow"] <= 1, (url, fit)
        assert fit["page"] <= WIDTH and fit["right"] <= WIDTH, (url, fit)
        header = page.locator("#result_list thead th", has_text=reason_column).first
        box = header.bounding_box()
        assert box is not None and box["x"] + box["width"] <= WIDTH, (url, box)
        assert page.evaluate(ICON_WORDS_IN_LINKS) == [], url
        assert unlabelled_controls(page) == [], url


# The issuer's queues, with what widens a row: a second active issuer (its column shows), a
# registered order, a superseded one and a pull & change result under the production status.
ISSUER_LIST_PAGES = [
    ("/admin/tracking/cardorder/", "Flags"),
    ("/admin/tracking/cardorder/?queue=registered", "Flags"),
    ("/admin/tracking/cardorder/?queue=superseded", "Flags"),
    ("/admin/tracking/cardorder/?queue=delivered", "Flags"),
    ("/admin/tracking/cardorder/?queue=open", "Flags"),
    ("/admin/tracking/productionfile/", "Exceptions"),
]


def test_the_issuers_queues_fit_1366_px_with_the_change_under_production(page, orders, issuer):
    Issuer.objects.create(
        issuer_id="WIDEBANK02", name="Second Bank, the widest name a bank may have"
    )
    now = timezone.now()
    orders_register(
        registrations=[
            Registration(
                issuer_id=issuer.issuer_id,
                card_id="card-registered-000001",
                operation_id="op-registered-000001-b7d2",
                input_file_name="ORDERS_20261130_REGISTERED_LONG_NAME_0001.csv",
            )
        ],
        actor=Actor.of_command("tests"),
    )
    stuck = CardOrder.objects.get(pk=orders["stuck"])
    card = Card(stuck.card_id, "op-0800-newer", stuck.input_file_name, "req-newer")
    card.start = (now - dt.timedelta(hours=1)).isoformat()
    post_items(issuer, [card.item("CARD_PROD_REQUESTED")], now - dt.timedelta(minutes=30))
    change = {
        "operationId": "op-upd-0999",
        "operation": "UPDATE_ORDER",
        "status": "SUCCESSFUL",
        "startTime": (now - dt.timedelta(hours=2)).isoformat(),
        "cardId": CardOrder.objects.get(pk=orders["in_production_3"]).card_id,
        "details": {"type": "ACCELERATE_AND_REDIRECT", "result": "REJECTED"},
    }
    post_items(issuer, [change], now - dt.timedelta(hours=1))
    insight_refresh(now=now)

    for url, reason_column in ISSUER_LIST_PAGES:
        page.goto(url)
        fit = page.evaluate(TABLE_FITS)
        assert not fit.get("missing"), url
        assert fit["overflow"] <= 1, (url, fit)
        assert fit["page"] <= WIDTH and fit["right"] <= WIDTH, (url, fit)
        header = page.locator("#result_list thead th", has_text=reason_column).first
        box = header.bounding_box()
        assert box is not None and box["x"] + box["width"] <= WIDTH, (url, box)
        if url == "/admin/tracking/cardorder/":
            expect(page.locator("#result_list thead th", has_text="Issuer")).to_be_visible()
            changes = page.locator("#result_list td.field-production .bo-change")
            expect(changes.filter(has_text="ACCELERATE AND REDIRECT rejected")).to_be_visible()
            screenshot(page, "orders_list_two_issuers")
        if url.endswith("queue=superseded"):
            expect(
                page.locator("#result_list").get_by_text("Replaced by a newer order")
            ).to_be_visible()


def test_ids_stay_on_one_line_and_show_in_full_on_hover(page, orders):
    page.goto("/admin/tracking/operationevent/")
    ids = page.locator("#result_list .bo-id")
    assert ids.count() > 0
    for index in range(min(ids.count(), 10)):
        element = ids.nth(index)
        assert element.evaluate("el => getComputedStyle(el).whiteSpace") == "nowrap"
        assert element.get_attribute("title").endswith(element.inner_text().rstrip("…"))


# ---------------------------------------------------------------------------- search, filters


def test_a_lower_case_tracking_number_opens_its_order(page, orders):
    page.goto("/admin/tracking/cardorder/")
    search = page.get_by_role("searchbox")
    search.fill("jd014600006281234567")
    search.press("Enter")
    page.wait_for_url(f"**/cardorder/{orders['stale']}/change/")


def test_a_partial_id_finds_the_card_at_once_and_says_what_matched(page, orders):
    page.goto("/admin/tracking/cardorder/?q=000999")
    expect(page.locator("#search-matched")).to_have_attribute("data-search-path", "card_id_part")
    expect(page.get_by_role("link", name="card-000999")).to_be_visible()


def test_a_search_without_match_says_what_it_did(page, orders):
    page.goto("/admin/tracking/cardorder/?q=nothing-like-this")
    note = page.get_by_role("status").filter(has_text="Nothing matches")
    expect(note).to_contain_text("ignoring case")
    expect(page.locator("#search-matched")).to_have_count(0)


def test_active_filters_show_as_chips_with_the_count_and_can_be_removed(page, orders):
    page.goto("/admin/tracking/cardorder/?carrier=ups&production_status=CARD_SHIPPED")
    chips = page.locator("[data-filter-chip]")
    expect(chips).to_have_count(2)
    expect(chips.filter(has_text="Carrier")).to_contain_text("UPS")
    expect(chips.filter(has_text="Production status")).to_contain_text("Shipped")
    shown = page.locator("#result_list tbody tr").count()
    expect(page.locator("#result-count")).to_contain_text(f"{shown} card order")

    chips.filter(has_text="Carrier").get_by_role("link").click()
    expect(page.locator("[data-filter-chip]")).to_have_count(1)
    assert "carrier=" not in page.url and "production_status=CARD_SHIPPED" in page.url

    # The production site is a list of the sites orders named, not free text.
    page.get_by_role("button", name="Filters").click()
    site = page.get_by_label("By production site")
    assert site.evaluate("el => el.tagName") == "SELECT"


def test_an_inverted_date_range_is_refused_with_a_message(page, orders):
    page.goto(
        "/admin/tracking/cardorder/?first_event_at_from=2026-12-01&first_event_at_to=2026-11-01"
    )
    expect(page.get_by_text("ends before it starts, so it was not applied")).to_be_visible()
    assert page.locator("#result_list tbody tr").count() > 0


def test_a_skip_link_leads_to_the_results(page, orders):
    page.goto("/admin/tracking/cardorder/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to the results")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#results"


# ---------------------------------------------------------------------------- D1's answer


def test_ask_d1_now_shows_the_answer_without_a_manual_reload(page, orders, issuer, d1, monkeypatch):
    """The worker is slow: the page waits, then shows D1's answer when the attempt lands.

    The queue is the one part played here (the task is held instead of run at once); the call
    to D1 is the sandbox's real answer over HTTP.
    """
    from tracking.services import reconcile

    held: list[tuple] = []
    monkeypatch.setattr(
        reconcile.reconcile_order_task,
        "delay_on_commit",
        lambda order_id, **kwargs: held.append((order_id, kwargs)),
    )
    gap = CardOrder.objects.get(pk=orders["gap"])
    card = Card(gap.card_id, gap.operation_id, gap.input_file_name, gap.issuer_request_id)
    d1.truth_record(issuer_id=issuer.issuer_id, items=[card.item(step) for step in PATH])
    page.goto(f"/admin/tracking/cardorder/{gap.pk}/change/")
    ask = page.get_by_role("button", name="Ask D1 now")
    assert "bo-button--primary" not in (ask.get_attribute("class") or "")

    ask.click()
    expect(page.get_by_text("Waiting for D1's answer")).to_be_visible()
    assert [order_id for order_id, _ in held] == [gap.pk]

    # The worker picks the task up; the page, untouched, shows what D1 said.
    order_id, kwargs = held[0]
    order_reconcile(order_id=order_id, trigger=kwargs["trigger"], user_id=kwargs["user_id"])
    attempts = page.get_by_role("table", name="Calls to D1's on-demand API for this order")
    expect(attempts.get_by_text("Corrected the order")).to_be_visible(timeout=15_000)
    expect(attempts.locator('.bo-coded[data-code="CARD_PROD_DONE"]')).to_be_visible()
    expect(attempts.get_by_text("HTTP 200")).to_be_visible()
    expect(page.get_by_text("Waiting for D1's answer")).to_have_count(0)


def test_the_order_summary_speaks_plainly(page, orders):
    shipped = CardOrder.objects.get(pk=orders["delivered"])
    page.goto(f"/admin/tracking/cardorder/{shipped.pk}/change/")
    summary = page.locator(".bo-order-summary")
    expect(summary.locator("dt", has_text="Shipped on")).to_be_visible()
    expect(summary.locator("dt", has_text="Delivered on")).to_be_visible()
    expect(summary.locator("abbr[title*='D1 expects to complete']")).to_have_text("Due date")
    number = summary.get_by_role("link", name=f"Track {shipped.tracking_number}")
    expect(number).to_contain_text(shipped.tracking_number)
    assert number.get_attribute("href") == shipped.tracking_url
    crumb = page.locator("#main h1")
    expect(crumb).to_contain_text(shipped.card_id)


# ---------------------------------------------------------------------------- dashboard


def test_the_last_notification_tile_updates_when_the_sandbox_posts(
    page, orders, live_server, settings, tmp_path
):
    settings.DASHBOARD_REFRESH_SECONDS = 2
    NotificationDelivery.objects.update(received_at=timezone.now() - dt.timedelta(hours=3))
    # Paused (the choice is remembered) while the sandbox posts; then left to refresh itself.
    page.evaluate("localStorage.setItem('dashboard-refresh-paused', '1')")
    page.goto("/admin/")
    tile = page.locator("#last-notification")
    expect(tile).to_contain_text("3 h ago")
    expect(page.get_by_text("Refresh paused")).to_be_visible()
    page.evaluate("window.stillTheSamePage = true")
    run = subprocess.run(
        [
            sys.executable, "-m", "d1sandbox", "feed",
            "--portal", live_server.url,
            "--issuer", ISSUER_ID,
            "--orders", "1",
            "--seed", "3",
            "--drop", "0",
            "--state", str(tmp_path / "state.sqlite3"),
        ],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert page.evaluate("window.stillTheSamePage === true"), "a paused dashboard reloaded"
    expect(tile).to_contain_text("3 h ago")

    page.get_by_role("button", name="Resume refresh").click()
    expect(tile).to_contain_text(re.compile(r"\b\d+ (s|min) ago"), timeout=20_000)
    expect(page.get_by_role("button", name="Pause refresh")).to_be_visible()
    page.get_by_role("button", name="Pause refresh").click()
    screenshot(page, "dashboard")
