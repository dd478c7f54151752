"""The insight pages in a real browser: a production file, sites and stages, the likely-late queue.

Set SCREENSHOT_DIR (e.g. docs/screenshots) to save them:
    SCREENSHOT_DIR=docs/screenshots python -m pytest tests/insight/test_browser.py
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.admin.test_browser import (
    PASSWORD,
    TABLE_FITS,
    WIDTH,
    fits_the_width,
    screenshot,
    unlabelled_controls,
)
from tests.fixtures.browser import needs_chromium
from tests.fixtures.insight import SHOWCASE_FILE, load_insight_showcase
from tracking.insight.refresh import insight_refresh

pytestmark = [
    needs_chromium,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def showcase(issuer, settings):
    settings.INSIGHT_MIN_HISTORY = 3
    now = timezone.now()
    orders = load_insight_showcase(issuer, now=now)
    insight_refresh(now=now)
    return orders


@pytest.fixture
def page(chromium, live_server, showcase):
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": 900}
    )
    context.set_default_timeout(10_000)
    # A first page on a busy machine (the server thread warms its templates) can be slow.
    context.set_default_navigation_timeout(30_000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def test_from_the_files_list_to_a_file_and_its_laggard(page, showcase):
    # The sidebar (folded at this width) and the dashboard lead here.
    assert page.locator('a[href="/admin/tracking/productionfile/"]').count() >= 1
    page.goto("/admin/tracking/productionfile/")
    assert page.evaluate(TABLE_FITS)["overflow"] <= 1
    page.get_by_role("link", name=SHOWCASE_FILE).click()
    page.wait_for_url("**/productionfile/file/**")
    assert page.get_by_role("heading", name="How far along").is_visible()
    # 6 shipped + 9 open + a laggard + an exception + a cancellation.
    assert page.locator('[data-figure="orders"]').inner_text() == "18"
    assert page.locator('[data-figure="shipped"]').inner_text() == "33.3 %"
    assert page.locator('[data-figure="exceptions"]').inner_text() == "5.6 %"
    laggards = page.get_by_role("table", name="Laggards, longest in stage first")
    assert laggards.get_by_role("link", name=showcase["laggard"].card_id).is_visible()
    assert page.locator('[data-figure="predicted"]').is_visible()
    assert fits_the_width(page)
    assert unlabelled_controls(page) == []
    screenshot(page, "file")

    # The laggard's order page links back to its file and shows its predicted ship date.
    laggards.get_by_role("link", name=showcase["laggard"].card_id).click()
    page.wait_for_url("**/cardorder/*/change/")
    assert page.locator('[data-field="predicted-ship"]').get_by_text("Likely late").is_visible()
    page.get_by_role("link", name=SHOWCASE_FILE).click()
    page.wait_for_url("**/productionfile/file/**")


def test_sites_and_stages_point_at_the_slow_site(page, showcase):
    page.goto("/admin/tracking/productionfile/")
    page.get_by_role("link", name="Sites and stages →").click()
    page.wait_for_url("**/heatmap/")
    slow = page.locator('td[data-site="PERSO-SITE-EU-02"][data-stage="CARD_PROD_ONGOING"]')
    fast = page.locator('td[data-site="PERSO-SITE-EU-01"][data-stage="CARD_PROD_ONGOING"]')
    assert "bo-heat--danger" in slow.get_attribute("class")
    assert "bo-heat--success" in fast.get_attribute("class")
    assert "of threshold" in slow.inner_text()
    assert page.locator('tr[data-carrier="dhl"]').is_visible()
    assert unlabelled_controls(page) == []
    screenshot(page, "heatmap")

    # A cell opens the orders behind it; the 30-day window is one click away.
    slow.get_by_role("link").click()
    page.wait_for_url("**/heatmap/cell/**")
    assert page.get_by_role("table", name="Orders, longest in the stage first").is_visible()
    assert page.locator("tbody tr").count() == 4
    page.go_back()
    page.get_by_role("link", name="Last 30 days").click()
    page.wait_for_url("**window=30**")


def test_the_likely_late_queue(page, showcase):
    page.goto("/admin/tracking/cardorder/")
    page.get_by_role("navigation", name="Order queues").get_by_role(
        "link", name="Likely late"
    ).click()
    page.wait_for_url("**queue=likely_late**")
    shown = set(page.locator("#result_list a.bo-link.font-semibold").all_inner_texts())
    assert showcase["laggard"].card_id in shown
    assert showcase["open1"].card_id not in shown  # due in ten days
    assert page.locator("#result_list").get_by_text("Likely late").first.is_visible()
    assert fits_the_width(page)
    # The predicted ship date has its own sortable column, and the table fits 1366 px.
    assert page.locator("#result_list thead th.sortable", has_text="Predicted ship").count() == 1
    assert page.evaluate(TABLE_FITS)["overflow"] <= 1
    screenshot(page, "likely_late", full_page=False)
