"""The back office in Japanese, in a Japanese browser (ja-JP, Asia/Tokyo, 1366x768).

A staff member with a Japanese browser and no preference of their own reads Japanese words, D1's
codes beside them, and every time in JST. Set SCREENSHOT_DIR to save the screens for the README:
    SCREENSHOT_DIR=docs/screenshots python -m pytest tests/admin/test_japanese_browser.py
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import expect

from tests.admin.test_browser import HEIGHT, PASSWORD, WIDTH, screenshot
from tests.fixtures.backoffice import load_backoffice_orders
from tests.fixtures.browser import needs_chromium

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]

JAPANESE_TIME = re.compile(r"\d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d JST")


@pytest.fixture
def orders(issuer) -> dict[str, int]:
    return load_backoffice_orders(issuer)


@pytest.fixture
def page(chromium, live_server, orders):
    """A signed-in staff member whose browser speaks Japanese, in Tokyo."""
    get_user_model().objects.create_superuser("hanako", "hanako@example.com", PASSWORD)
    context = chromium.new_context(
        base_url=live_server.url,
        viewport={"width": WIDTH, "height": HEIGHT},
        locale="ja-JP",
        timezone_id="Asia/Tokyo",
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.locator("#id_username").fill("hanako")
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#id_password").press("Enter")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def test_the_dashboard_and_an_order_page_read_in_japanese_with_jst_times(page, orders):
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    main = page.locator("#content-main")
    for words in ("処理中の注文", "未対応の例外", "製造工程別の処理中注文", "アラート"):
        expect(main.get_by_text(words).first).to_be_visible()
    expect(page.locator("#nav-sidebar, nav").get_by_text("D1 への照会").first).to_be_visible()
    expect(main.get_by_text(re.compile(r"時点の数値です"))).to_contain_text("JST")
    screenshot(page, "dashboard-ja")

    page.goto(f"/admin/tracking/cardorder/{orders['shipped']}/change/")
    summary = page.locator(".bo-order-summary")
    expect(summary.get_by_text("カードの現在の状況")).to_be_visible()
    # The word and D1's code, side by side.
    shipped = summary.locator(".bo-coded[data-code='CARD_SHIPPED']").first
    expect(shipped).to_contain_text("発送済み")
    expect(shipped).to_contain_text("CARD_SHIPPED")
    expect(summary.locator("time").first).to_have_text(JAPANESE_TIME)
    expect(page.locator(".bo-order-timeline").get_by_text("製造工程").first).to_be_visible()
    screenshot(page, "order-page-ja")


def test_look_up_at_d1_shows_its_box_and_highlights_an_error(page):
    page.goto(reverse("admin:tracking_cardorder_look_up"))
    box = page.locator("#id_card_id")
    expect(box).to_be_visible()
    # A box the eye finds before any click: a border of its own, not only a focus ring.
    page.locator("h2").first.click()
    border = box.evaluate("e => parseFloat(getComputedStyle(e).borderTopWidth)")
    assert border >= 1
    expect(page.locator("label[for=id_card_id]")).to_contain_text("カード ID")


def test_djangos_user_page_does_not_warn_about_the_time_difference(page):
    """Django's date widgets warn "You are 9 hours ahead of server time" unless the page's zone
    is the browser's: a Tokyo browser reading in Tokyo time gets no warning."""
    me = get_user_model().objects.get(username="hanako")
    page.goto(f"/admin/auth/user/{me.pk}/change/")
    expect(page.locator("#id_date_joined_0")).to_be_visible()
    expect(page.locator(".timezonewarning")).to_have_count(0)
