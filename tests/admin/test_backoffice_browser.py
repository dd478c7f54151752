"""The back office in a Japanese browser (ja-JP, Asia/Tokyo, 1366x768) doing what callers need.

Find a card by the last 4 characters of its tracking number, read its stage, carrier and
expected delivery with JST times, work two exceptions in bulk, export today's shipped cards as
.xlsx, read back with openpyxl, and upload an order file Excel saved as Shift_JIS. Assertions
hold on data and stable ids and classes, never on English words (the pages are translated).
"""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo

import openpyxl
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from tests.fixtures.backoffice import Card, load_backoffice_orders, post_items, shipment
from tests.fixtures.browser import needs_chromium
from tests.fixtures.spec_examples import ISSUER_ID
from tracking.models import CardOrder, OrderAcknowledgement
from tracking.selectors.export import ORDER_COLUMNS

PASSWORD = "boss-password-1"
WIDTH, HEIGHT = 1366, 768
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def orders(issuer, settings) -> dict[str, int]:
    # The site's zone is Tokyo's (a user's own zone comes from their profile when set).
    settings.TIME_ZONE = "Asia/Tokyo"
    found = load_backoffice_orders(issuer)
    # A Japanese card with all-digit ids, shipped by Japan Post an hour ago; D1 sends its ETA
    # as a UTC time late in the day, which is the next day in Tokyo.
    card = Card("0001234567", "000987654321", "BATCH_JP_0001.csv", "00042")
    now = timezone.now()
    post_items(issuer, [card.item("CARD_PROD_DONE")], now - dt.timedelta(hours=2))
    parcel = shipment(
        "012345678901",
        carrier="japan-post",
        message="引受",
        expectedDelivery="2026-12-08T20:00:00Z",
    )
    del parcel["trackingUrl"]  # the portal links Japan Post's own tracking page
    shipped = card.item("CARD_SHIPPED", op_status="SUCCESSFUL", shipment=parcel)
    post_items(issuer, [shipped], now - dt.timedelta(hours=1))
    found["japanese"] = CardOrder.objects.get(card_id="0001234567").pk
    return found


@pytest.fixture
def page(chromium, live_server, orders):
    get_user_model().objects.create_superuser("boss", "boss@example.jp", PASSWORD)
    context = chromium.new_context(
        base_url=live_server.url,
        viewport={"width": WIDTH, "height": HEIGHT},
        locale="ja-JP",
        timezone_id="Asia/Tokyo",
        accept_downloads=True,
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.locator("#id_username").fill("boss")
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#id_password").press("Enter")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def test_a_caller_reads_out_the_last_four_and_staff_find_where_the_card_is(page, orders):
    page.goto("/admin/tracking/cardorder/")
    search = page.get_by_role("searchbox")
    search.fill("8901")  # the end of 012345678901, as printed on the label
    search.press("Enter")
    expect(page.locator("#search-matched")).to_have_attribute("data-search-path", "tracking_end")
    expect(page.locator("#search-matched")).to_have_attribute("data-count", "1")
    page.locator("#result_list a.bo-id", has_text="0001234567").click()
    page.wait_for_url(f"**/cardorder/{orders['japanese']}/change/")

    # The stage, by D1's code beside the words.
    expect(page.locator('.bo-coded[data-code="CARD_SHIPPED"]').first).to_be_visible()
    # The carrier, with its tracking page.
    tracking = page.locator('a[href*="trackings.post.japanpost.jp"]').first
    expect(tracking).to_be_visible()
    assert "012345678901" in tracking.get_attribute("href")
    # The expected delivery: D1's time 2026-12-08 20:00 UTC is the 9th in Tokyo.
    expected = page.locator("#expected-delivery")
    expect(expected).to_have_attribute("data-source", "d1")
    expect(expected).to_have_attribute("data-expected", "2026-12-09")
    # The carrier's updates, each time with its zone: JST.
    update = page.locator("#carrier-timeline .bo-carrier-update").first
    expect(update).to_have_attribute("data-status", "IN_TRANSIT")
    received = update.locator('[data-field="received"] time')
    expect(received).to_contain_text("JST")
    shipped_at = CardOrder.objects.get(pk=orders["japanese"]).stage_entered_at
    in_tokyo = shipped_at.astimezone(TOKYO)
    expect(received).to_have_attribute("datetime", in_tokyo.isoformat(timespec="seconds"))
    # Written as a Japanese back office writes it.
    expect(received).to_contain_text(
        f"{in_tokyo.year}年{in_tokyo.month}月{in_tokyo.day}日 {in_tokyo:%H:%M} JST"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH


def test_two_exceptions_are_worked_in_bulk(page, orders):
    page.goto("/admin/tracking/cardorder/?queue=exceptions")
    chosen = [orders["exception"], orders["conflict"]]
    for pk in chosen:
        page.locator(f'input.action-select[value="{pk}"]').check()
    page.locator('select[name="action"]').select_option("take_action")
    page.locator('button[name="index"]').click()
    # Taken: the triage column names who holds each row, and the rows stay where they were.
    expect(page.locator('.bo-assignee[data-assignee="boss"]')).to_have_count(2)
    assignees = CardOrder.objects.filter(pk__in=chosen).values_list("assignee__username", flat=True)
    assert set(assignees) == {"boss"}

    page.goto("/admin/tracking/cardorder/?queue=exceptions&assignee=me")
    for pk in chosen:
        page.locator(f'input.action-select[value="{pk}"]').check()
    page.locator('select[name="action"]').select_option("acknowledge_action")
    page.locator('button[name="index"]').click()
    expect(page.locator("#acknowledge-orders li")).to_have_count(2)
    page.locator("#acknowledge-bulk-submit").click()
    # An empty note is refused, highlighted, and nothing is acknowledged.
    expect(page.locator("#bulk-acknowledge-note")).to_be_visible()
    assert not OrderAcknowledgement.objects.exists()
    page.locator("#bulk-acknowledge-note").fill("再発行済み (reissued)")
    page.locator("#acknowledge-bulk-submit").click()
    # Back on the list, the two have left the open exceptions.
    for pk in chosen:
        expect(page.locator(f'input.action-select[value="{pk}"]')).to_have_count(0)

    notes = OrderAcknowledgement.objects.filter(order__in=chosen)
    assert sorted(notes.values_list("order_id", flat=True)) == sorted(chosen)
    assert set(notes.values_list("note", flat=True)) == {"再発行済み (reissued)"}
    page.goto("/admin/tracking/cardorder/?queue=acknowledged")
    expect(page.locator(".bo-acknowledged-by")).to_have_count(2)
    expect(page.locator('.bo-assignee[data-assignee="boss"]')).to_have_count(2)


def test_todays_shipped_cards_export_as_xlsx_with_ids_as_text_and_jst_dates(page, orders):
    page.goto("/admin/tracking/cardorder/?production_status=CARD_SHIPPED&entered=24h")
    with page.expect_download() as download_info:
        page.locator("#export-xlsx").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    workbook = openpyxl.load_workbook(io.BytesIO(download.path().read_bytes()))
    sheet = workbook.active
    header_cells = next(sheet.iter_rows(max_row=1))
    headers = [cell.value for cell in header_cells]
    rows = {row[1].value: row for row in sheet.iter_rows(min_row=2)}
    assert "0001234567" in rows
    row = rows["0001234567"]
    column = {index: cell for index, cell in enumerate(row)}
    card_cell = column[1]
    assert card_cell.data_type == "s" and card_cell.value == "0001234567"
    tracking = next(cell for cell in row if cell.value == "012345678901")
    assert tracking.data_type == "s"
    shipped_column = [path for _, path in ORDER_COLUMNS].index("shipped_on")
    assert "JST" in headers[shipped_column]
    shipped = column[shipped_column].value
    assert isinstance(shipped, dt.datetime)
    expected = CardOrder.objects.get(pk=orders["japanese"]).stage_entered_at.astimezone(TOKYO)
    assert shipped.date() == expected.date()
    assert shipped.replace(microsecond=0) == expected.replace(tzinfo=None, microsecond=0)


def test_an_excel_shift_jis_order_file_is_uploaded_and_registered(page, orders):
    text = (
        "card_id,issuer_id,operation_id,issuer_request_id,input_file_name,due_date\r\n"
        f"card-sj-0001,{ISSUER_ID},op-sj-0001,依頼-0001,注文ファイル_12月.csv,2026/12/12\r\n"
    )
    page.goto("/admin/tracking/cardorder/register/")
    page.locator('input[type="file"][name="file"]').set_input_files(
        files=[{"name": "注文.csv", "mimeType": "text/csv", "buffer": text.encode("cp932")}]
    )
    page.locator('form[enctype="multipart/form-data"] button[type="submit"]').click()
    valid = page.locator("#valid-rows tbody tr")
    expect(valid).to_have_count(1)
    expect(valid.first).to_contain_text("注文ファイル_12月.csv")
    assert not CardOrder.objects.filter(card_id="card-sj-0001").exists()
    page.locator('button[name="confirm"]').click()
    page.wait_for_url("**/cardorder/**")
    order = CardOrder.objects.get(card_id="card-sj-0001")
    assert order.issuer_request_id == "依頼-0001"
    assert order.due_date.isoformat() == "2026-12-12"
