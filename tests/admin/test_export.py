"""CSV export: the rows of the list as filtered, streamed, for staff who may view orders."""

from __future__ import annotations

import csv
import io
import tracemalloc

import pytest
from django.http import StreamingHttpResponse

from tests.admin.test_orders_list import listed_cards
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
    assert {row["card_id"] for row in rows} == listed_cards(boss.get(LIST, params))
    assert len(rows) == len({row["card_id"] for row in rows})


def test_the_export_carries_the_order_columns(boss, orders):
    rows = exported(boss.get(EXPORT, {"q": "1Z999AA10123456784"}))
    assert len(rows) == 1
    row = rows[0]
    assert row["issuer_id"] == "ISSUERX001"
    assert row["production_status"] == "CARD_SHIPPED"
    assert row["carrier"] == "ups"
    assert row["tracking_number"] == "1Z999AA10123456784"
    assert row["needs_reconcile"] == "no"


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
    assert rows[0]["error"] == '\'=HYPERLINK("http://x")'


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
    assert rows and all(row["tracking_number"] == "•••••• (hidden)" for row in rows)
    assert all(row["tracking_url"] == "•••••• (hidden)" for row in rows)
    assert all(row["carrier"] == "ups" for row in rows)
