"""Production files: counts per stage, shares, first and last notification, laggards, the list."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.fixtures.insight import DAY, HOUR, NOW, path_steps, send_order
from tracking.insight import production_files
from tracking.insight.refresh import insight_refresh
from tracking.models import ProductionFile

pytestmark = pytest.mark.django_db
FILE = "ORDERS_20260305_01.csv"


@pytest.fixture
def file_orders(issuer, time_machine):
    """Nine orders of FILE: two shipped, a data exception, a cancellation, four in
    CARD_PROD_ONGOING for 1, 2, 3 and 20 h, one in CARD_PROD_DONE; one order of another file."""
    time_machine.move_to(NOW, tick=False)
    start = NOW - 3 * DAY
    orders = {}

    def send(name, steps, **kwargs):
        orders[name] = send_order(issuer, steps, file_name=FILE, **kwargs)

    send("shipped1", path_steps(start, HOUR, HOUR, HOUR, HOUR, HOUR))
    send("shipped2", path_steps(start + HOUR, HOUR, HOUR, HOUR, HOUR, HOUR))
    send("exception", [("CARD_PROD_REQUESTED", start), ("DATA_EXCEPTION", start + HOUR)])
    send("cancelled", [("CARD_PROD_REQUESTED", start), ("CARD_PROD_CANCELED", start + 2 * HOUR)])
    for hours in (1, 2, 3, 20):
        send(f"ongoing{hours}", [("CARD_PROD_ONGOING", NOW - hours * HOUR)])
    send("done", [("CARD_PROD_DONE", NOW - HOUR)])
    orders["elsewhere"] = send_order(issuer, [("CARD_PROD_ONGOING", NOW - 50 * HOUR)])
    return orders


def test_file_figures(issuer, file_orders):
    figures = production_files.file_figures(issuer_id=issuer.pk, name=FILE)
    assert figures.orders == 9
    assert figures.stage_counts == {
        "CARD_SHIPPED": 2,
        "DATA_EXCEPTION": 1,
        "CARD_PROD_CANCELED": 1,
        "CARD_PROD_ONGOING": 4,
        "CARD_PROD_DONE": 1,
    }
    assert (figures.shipped, figures.finished, figures.exceptions, figures.cancelled) == (
        2,
        4,
        1,
        1,
    )
    assert figures.share_shipped == pytest.approx(100 * 2 / 9)
    assert figures.share_finished == pytest.approx(100 * 4 / 9)
    assert figures.first_event_at == NOW - 3 * DAY
    assert figures.last_event_at == NOW - HOUR
    assert [s.status for s in figures.bar()] == [
        "CARD_PROD_ONGOING",
        "CARD_PROD_DONE",
        "CARD_SHIPPED",
        "DATA_EXCEPTION",
        "CARD_PROD_CANCELED",
    ]


def test_laggards_are_behind_the_files_median_by_more_than_the_threshold(
    issuer, file_orders, settings
):
    settings.INSIGHT_LAGGARD_THRESHOLD = 12 * HOUR
    figures = production_files.file_figures(issuer_id=issuer.pk, name=FILE)
    laggards = production_files.file_laggards(issuer_id=issuer.pk, name=FILE, figures=figures)
    medians = {m.status: m for m in laggards.medians}
    # In CARD_PROD_ONGOING for 1, 2, 3 and 20 h: the median is 2.5 h; 20 h > 2.5 + 12 h.
    assert medians["CARD_PROD_ONGOING"].median_elapsed(NOW) == 2.5 * HOUR
    assert medians["CARD_PROD_DONE"].median_elapsed(NOW) == HOUR
    assert laggards.count == 1
    assert [o.pk for o in laggards.orders] == [file_orders["ongoing20"].pk]
    settings.INSIGHT_LAGGARD_THRESHOLD = 20 * HOUR
    laggards = production_files.file_laggards(issuer_id=issuer.pk, name=FILE, figures=figures)
    assert laggards.count == 0


def test_the_files_list_holds_the_same_figures(issuer, file_orders):
    insight_refresh(now=NOW)
    file = ProductionFile.objects.get(issuer=issuer, name=FILE)
    assert (file.orders, file.shipped, file.finished, file.exceptions, file.cancelled) == (
        9,
        2,
        4,
        1,
        1,
    )
    assert file.share_finished == pytest.approx(100 * 4 / 9)
    assert (file.first_event_at, file.last_event_at) == (NOW - 3 * DAY, NOW - HOUR)
    assert ProductionFile.objects.count() == 2


def test_the_files_list_sorts_and_filters(issuer, file_orders, staff_user):
    insight_refresh(now=NOW)
    client = Client()
    client.force_login(staff_user)
    url = "/admin/tracking/productionfile/"
    page = client.get(url).content.decode()
    assert FILE in page and "44.4 %" in page
    with_exceptions = client.get(url, {"has_exceptions": "yes"}).content.decode()
    assert FILE in with_exceptions and "FILE_A.csv" not in with_exceptions
    # Sorted by share finished, ascending: the other file (0 % finished) first.
    from tracking.admin.insight import ProductionFileAdmin

    column = ProductionFileAdmin.list_display.index("finished_share")
    page = client.get(url, {"o": str(column)}).content.decode()
    assert page.index("FILE_A.csv") < page.index(FILE)


def test_the_file_page(issuer, file_orders, staff_user):
    insight_refresh(now=NOW)
    client = Client()
    client.force_login(staff_user)
    response = client.get(
        "/admin/tracking/productionfile/file/", {"issuer": issuer.pk, "name": FILE}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-figure="orders">9<' in page
    assert 'data-figure="shipped">22.2 %' in page
    assert 'data-figure="exceptions">11.1 %' in page
    assert 'data-figure="cancelled">11.1 %' in page
    assert file_orders["ongoing20"].card_id in page  # the laggard
    assert file_orders["ongoing1"].card_id not in page
    missing = client.get(
        "/admin/tracking/productionfile/file/", {"issuer": issuer.pk, "name": "nope"}
    )
    assert missing.status_code == 404


def test_search_by_file_name_offers_the_file_page(issuer, file_orders, staff_user):
    insight_refresh(now=NOW)
    client = Client()
    client.force_login(staff_user)
    page = client.get("/admin/tracking/cardorder/", {"q": "20260305"}).content.decode()
    assert "Production file matching the search" in page
    assert "/admin/tracking/productionfile/file/?issuer=" in page


def test_the_file_link_lists_its_orders(issuer, file_orders, staff_user):
    from tracking.admin.insight import file_orders_url

    client = Client()
    client.force_login(staff_user)
    page = client.get(file_orders_url(issuer_id=issuer.pk, name=FILE)).content.decode()
    assert file_orders["ongoing1"].card_id in page
    assert file_orders["elsewhere"].card_id not in page


def test_staff_without_order_access_are_refused(issuer, file_orders):
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user("nobody", password="pw", is_staff=True)
    client = Client()
    client.force_login(nobody)
    response = client.get(
        "/admin/tracking/productionfile/file/", {"issuer": issuer.pk, "name": FILE}
    )
    assert response.status_code == 403
