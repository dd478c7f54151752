"""CSV export: the rows of the list as filtered, streamed, for staff who may view orders."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tracemalloc
import zoneinfo

import openpyxl
import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from tests.admin.test_orders_list import listed_cards
from tests.fixtures.backoffice import Card, post_items, shipment
from tracking.models import CardOrder

pytestmark = pytest.mark.django_db

LIST = "/admin/tracking/cardorder/"
EXPORT = "/admin/tracking/cardorder/export.csv"


def exported(response) -> list[dict]:
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="card-orders-')
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("\ufeff"), "spreadsheet tools need the UTF-8 byte-order mark"
    text = text.removeprefix("\ufeff")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"queue": "exceptions"},
        {"queue": "stuck", "production_status": "DATA_PREPARED"},
        {"carrier": "ups"},
        {"q": "20261121_US"},
    ],
)
def test_the_export_has_the_rows_of_the_filtered_list(boss, orders, params):
    rows = exported(boss.get(EXPORT, params))
    assert {row["Card id"] for row in rows} == listed_cards(boss.get(LIST, params))
    assert len(rows) == len({row["Card id"] for row in rows})


def test_the_export_carries_the_order_columns(boss, orders):
    rows = exported(boss.get(EXPORT, {"q": "1Z999AA10123456784"}))
    assert len(rows) == 1
    row = rows[0]
    assert row["Issuer"] == "ISSUERX001"
    assert row["Production status"] == "Shipped"
    assert row["Production status (code)"] == "CARD_SHIPPED"
    assert row["Carrier"] == "UPS"
    assert row["Tracking number"] == "1Z999AA10123456784"
    assert row["Will ask D1"] == "no"


def _peak_bytes_exporting(client, settings) -> int:
    settings.ADMIN_EXPORT_CHUNK_SIZE = 200
    response = client.get(EXPORT)
    tracemalloc.start()
    try:
        lines = sum(1 for _ in response.streaming_content)
        return tracemalloc.get_traced_memory()[1], lines
    finally:
        tracemalloc.stop()


def _add_orders(issuer, count: int, start: int) -> None:
    CardOrder.objects.bulk_create(
        CardOrder(
            issuer=issuer,
            card_id=f"bulk-{n:07d}",
            operation_id=f"op-bulk-{n:07d}",
            operation="PRODUCE",
            production_status="CARD_PROD_REQUESTED",
            input_file_name="BATCH_BULK_" + "X" * 40 + ".csv",
            error="a long enough error text to weigh something in memory " * 3,
        )
        for n in range(start, start + count)
    )


def test_memory_stays_flat_whatever_the_number_of_rows(boss, bo_issuer, settings):
    _add_orders(bo_issuer, 500, 0)
    small, small_lines = _peak_bytes_exporting(boss, settings)
    _add_orders(bo_issuer, 2500, 500)
    large, large_lines = _peak_bytes_exporting(boss, settings)
    assert large_lines - small_lines == 2500
    # Six times the rows, nowhere near six times the memory: rows are read a chunk at a time.
    assert large < 2 * small, (small, large)


def test_cells_a_spreadsheet_would_run_are_defused(boss, orders):
    CardOrder.objects.filter(pk=orders["exception"]).update(error='=HYPERLINK("http://x")')
    rows = exported(boss.get(EXPORT, {"has_error": "yes"}))
    assert rows[0]["D1 error"] == '\'=HYPERLINK("http://x")'


def test_the_export_needs_the_view_permission(admin_client_as, orders):
    assert admin_client_as().get(EXPORT).status_code == 403
    viewer = admin_client_as("tracking.view_cardorder", username="viewer")
    assert len(exported(viewer.get(EXPORT))) == CardOrder.objects.count()


def test_the_list_offers_the_export_of_what_it_shows(boss, orders):
    html = boss.get(LIST, {"queue": "stuck", "carrier": "ups"}).content.decode()
    assert f'href="{EXPORT}?queue=stuck&amp;carrier=ups"' in html


def test_viewers_export_personal_fields_masked(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    rows = exported(viewer.get(EXPORT, {"carrier": "ups"}))
    assert rows and all(row["Tracking number"] == "•••••• (hidden)" for row in rows)
    assert all(row["Tracking link"] == "•••••• (hidden)" for row in rows)
    assert all(row["Carrier"] == "UPS" for row in rows)


def test_the_csv_reads_in_a_spreadsheet(boss, orders):
    """Headers in words, dates as YYYY-MM-DD HH:MM:SS with the zone in the header."""
    response = boss.get(EXPORT, {"queue": "stuck"})
    assert 'filename="card-orders-stuck-' in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    headers = next(reader)
    assert headers[:3] == ["Issuer", "Card id", "Operation id"]
    assert "Last update (UTC)" in headers and "First seen (UTC)" in headers
    assert headers[-3:] == ["Time in stage", "Stage time limit", "Over the limit by"]
    assert not any("_" in header for header in headers), headers
    rows = [dict(zip(headers, row, strict=True)) for row in reader]
    assert rows
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", row["Last update (UTC)"])
        assert row["Over the limit by"], "every order of the Stuck list is over its limit"


def test_the_file_name_names_the_list_and_its_filters(boss, orders):
    response = boss.get(EXPORT, {"queue": "exceptions", "carrier": "ups"})
    name = re.search(r'filename="([^"]+)"', response["Content-Disposition"]).group(1)
    assert name.startswith("card-orders-exceptions-carrier-ups-") and name.endswith(".csv")


# ---------------------------------------------------------------------------- spreadsheets

EXPORT_XLSX = "/admin/tracking/cardorder/export.xlsx"


@pytest.fixture
def numeric_card(bo_issuer):
    """A card whose ids are all digits, shipped by Japan Post with a twelve-digit number."""
    card = Card("0001234567", "000987654321", "BATCH_JP.csv", "00042")
    when = timezone.now() - dt.timedelta(hours=2)
    post_items(bo_issuer, [card.item("CARD_PROD_DONE")], when - dt.timedelta(hours=1))
    shipped = card.item(
        "CARD_SHIPPED",
        op_status="SUCCESSFUL",
        shipment=shipment("012345678901", carrier="japan-post"),
    )
    post_items(bo_issuer, [shipped], when)
    return CardOrder.objects.get(card_id="0001234567")


def test_csv_ids_stay_text_in_excel(boss, orders, numeric_card):
    text = b"".join(boss.get(EXPORT, {"q": "0001234567"}).streaming_content).decode()
    row = next(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    # Excel evaluates ="..." to the exact text: the leading zeros stay.
    assert row["Card id"] == '="0001234567"'
    assert row["Operation id"] == '="000987654321"'
    assert row["Issuer request id"] == '="00042"'
    assert row["Tracking number"] == '="012345678901"'
    assert row["Carrier"] == "Japan Post"
    assert row["Shipped on (UTC)"].startswith(numeric_card.stage_entered_at.strftime("%Y-%m-%d"))


def test_xlsx_keeps_ids_as_text_and_times_as_dates_in_the_zone(
    boss, orders, numeric_card, settings
):
    settings.TIME_ZONE = "Asia/Tokyo"
    response = boss.get(EXPORT_XLSX, {"production_status": "CARD_SHIPPED"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    assert response["Content-Disposition"].endswith('.xlsx"')
    workbook = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    sheet = workbook.active
    rows = list(sheet.iter_rows(values_only=True))
    headers = rows[0]
    assert "Shipped on (JST)" in headers and "Delivered on (JST)" in headers
    by_card = {row[headers.index("Card id")]: row for row in rows[1:]}
    row = by_card["0001234567"]
    assert row[headers.index("Tracking number")] == "012345678901"
    assert row[headers.index("Operation id")] == "000987654321"
    card_cell = next(
        cell for cell in sheet[2 + list(by_card).index("0001234567")] if cell.value == "0001234567"
    )
    assert card_cell.data_type == "s"
    shipped = row[headers.index("Shipped on (JST)")]
    assert isinstance(shipped, dt.datetime)
    tokyo = numeric_card.stage_entered_at.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert shipped == tokyo.replace(tzinfo=None, microsecond=shipped.microsecond)


def test_xlsx_has_the_delivered_on_date(boss, orders):
    response = boss.get(EXPORT_XLSX, {"q": "card-000124"})
    rows = list(
        openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active.values
    )
    headers, row = rows[0], rows[1]
    assert isinstance(row[headers.index("Delivered on (UTC)")], dt.datetime)
    assert row[headers.index("Delivered on (UTC)")] > row[headers.index("Shipped on (UTC)")]


def test_xlsx_masks_personal_fields_for_viewers(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    response = viewer.get(EXPORT_XLSX)
    rows = list(
        openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active.values
    )
    headers = rows[0]
    numbers = {row[headers.index("Tracking number")] for row in rows[1:]}
    assert "1Z999AA10123456784" not in numbers


@pytest.mark.parametrize(
    ("word", "cell"),
    [
        ("InTransit_003", "In transit (InTransit_003)"),
        ("out for delivery", "Out for delivery (out for delivery)"),
        ("IN_TRANSIT", "In transit (IN_TRANSIT)"),
        ("HeldByTheMoon", "Not understood (HeldByTheMoon)"),
    ],
)
def test_the_carrier_status_is_exported_as_its_class_with_the_carriers_word(
    boss, orders, word, cell
):
    CardOrder.objects.filter(tracking_number="1Z999AA10123456784").update(shipment_status=word)

    rows = exported(boss.get(EXPORT, {"q": "1Z999AA10123456784"}))

    assert rows[0]["Carrier status"] == cell
