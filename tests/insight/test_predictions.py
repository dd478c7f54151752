"""Predicted ship dates: p50 and p90 from the remaining stages' recent durations, hand-computed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from tests.fixtures.backoffice import post_items
from tests.fixtures.insight import DAY, HOUR, NOW, send_order
from tracking.insight.predictions import Basis, History, predict
from tracking.insight.refresh import insight_refresh
from tracking.models import Issuer, OrderPrediction

pytestmark = pytest.mark.django_db
DUE = dt.date(2026, 3, 10)


def shipped(issuer, *, site: str, ongoing_hours: float, done_hours: float = 5):
    entered = NOW - 5 * DAY
    done = entered + ongoing_hours * HOUR
    return send_order(
        issuer,
        [
            ("CARD_PROD_ONGOING", entered),
            ("CARD_PROD_DONE", done),
            ("CARD_SHIPPED", done + done_hours * HOUR),
        ],
        site=site,
    )


def open_order(issuer, *, site: str, stage: str = "CARD_PROD_ONGOING", hours_ago: float = 2):
    return send_order(issuer, [(stage, NOW - hours_ago * HOUR)], site=site, due=DUE)


@pytest.fixture
def other_issuer(db) -> Issuer:
    return Issuer.objects.create(issuer_id="ISSUERY002", name="Other Bank")


@pytest.fixture
def history(issuer, other_issuer, settings):
    """Issuer X at site A shipped 10, 20 and 60 h after entering CARD_PROD_ONGOING (5 h after
    CARD_PROD_DONE each); issuer Y at site B once, 100 h after. Two orders make a history."""
    settings.INSIGHT_MIN_HISTORY = 2
    for hours in (5, 15, 55):
        shipped(issuer, site="SITE-A", ongoing_hours=hours)
    shipped(other_issuer, site="SITE-B", ongoing_hours=95)


def refresh():
    insight_refresh(now=NOW)


def prediction(order) -> OrderPrediction | None:
    return OrderPrediction.objects.filter(order=order).first()


def test_from_the_issuers_own_history_at_its_site(history, issuer):
    order = open_order(issuer, site="SITE-A")
    refresh()
    found = prediction(order)
    # p50: entered + 20 h = 03-11 06:00; p90: entered + 52 h (20 + 0.8 x 40) = 03-12 14:00.
    assert (found.p50, found.p90, found.basis) == (
        dt.date(2026, 3, 11),
        dt.date(2026, 3, 12),
        Basis.ISSUER_SITE,
    )
    assert found.likely_late  # due 03-10


def test_an_order_late_in_its_stage_still_has_the_rest_ahead(history, issuer):
    order = open_order(issuer, site="SITE-A", hours_ago=30)
    refresh()
    found = prediction(order)
    # entered + 20 h is already past; the rest (CARD_PROD_DONE -> shipped, 5 h) is not.
    assert (found.p50, found.p90) == (dt.date(2026, 3, 10), dt.date(2026, 3, 11))
    assert not found.likely_late  # p50 on the due date is not after it


def test_another_issuer_at_the_site_uses_the_sites_history(history, other_issuer):
    order = open_order(other_issuer, site="SITE-A")
    refresh()
    found = prediction(order)
    assert (found.p50, found.p90, found.basis) == (
        dt.date(2026, 3, 11),
        dt.date(2026, 3, 12),
        Basis.SITE,
    )


@pytest.mark.parametrize("site", ["SITE-C", "SITE-B"])
def test_too_little_history_falls_back_to_all_sites(history, issuer, site):
    order = open_order(issuer, site=site)
    refresh()
    found = prediction(order)
    # All sites: 10, 20, 60, 100 h -> p50 40 h (03-12 02:00), p90 88 h (03-14 02:00) after
    # entering at 03-10 10:00.
    assert (found.p50, found.p90, found.basis) == (
        dt.date(2026, 3, 12),
        dt.date(2026, 3, 14),
        Basis.ALL,
    )


def test_no_history_no_prediction(history, issuer):
    order = open_order(issuer, site="SITE-A", stage="DATA_PREPARED")
    refresh()
    assert prediction(order) is None


def test_shipped_and_failed_orders_have_none(history, issuer):
    refresh()
    assert not OrderPrediction.objects.exists()


def test_a_prediction_goes_when_the_order_ships(history, issuer):
    order = open_order(issuer, site="SITE-A")
    refresh()
    assert prediction(order) is not None
    # The order ships: a new notification for the same operation.
    event = order.events.first().payload
    post_items(
        issuer,
        [
            {
                **event,
                "status": "SUCCESSFUL",
                "details": {**event["details"], "status": "CARD_SHIPPED"},
            }
        ],
        NOW + HOUR,
    )
    insight_refresh(now=NOW + 2 * HOUR)
    assert prediction(order) is None


def test_read_api_list_and_detail(history, issuer, api):
    late = open_order(issuer, site="SITE-A")
    unknown = open_order(issuer, site="SITE-A", stage="DATA_PREPARED")
    refresh()
    listed = {o["card_id"]: o for o in api.get("/api/v1/orders/").json()["results"]}
    assert listed[late.card_id]["predicted_ship_date"] == "2026-03-11"
    assert listed[late.card_id]["predicted_ship_range"] == ["2026-03-11", "2026-03-12"]
    assert listed[unknown.card_id]["predicted_ship_date"] is None
    assert listed[unknown.card_id]["predicted_ship_range"] is None
    shipped_card = next(c for c, o in listed.items() if o["production_status"] == "CARD_SHIPPED")
    assert listed[shipped_card]["predicted_ship_date"] is None
    detail = api.get(f"/api/v1/orders/{late.pk}/").json()
    assert detail["predicted_ship_range"] == ["2026-03-11", "2026-03-12"]


def test_likely_late_queue_and_sortable_column(history, issuer, staff_user):
    late = open_order(issuer, site="SITE-A")
    on_time = open_order(issuer, site="SITE-A", hours_ago=30)
    refresh()
    client = Client()
    client.force_login(staff_user)
    page = client.get("/admin/tracking/cardorder/", {"queue": "likely_late"}).content.decode()
    assert late.card_id in page and on_time.card_id not in page
    assert "Likely late" in page
    from tracking.admin.orders import CardOrderAdmin

    column = CardOrderAdmin.list_display.index("predicted_ship")
    for direction, first in (("", on_time), ("-", late)):
        page = client.get(
            "/admin/tracking/cardorder/", {"queue": "open", "o": f"{direction}{column}"}
        ).content.decode()
        others = late if first is on_time else on_time
        assert page.index(first.card_id) < page.index(others.card_id)


def test_order_page_shows_the_prediction_and_links_its_file(history, issuer, staff_user):
    order = open_order(issuer, site="SITE-A")
    refresh()
    client = Client()
    client.force_login(staff_user)
    page = client.get(f"/admin/tracking/cardorder/{order.pk}/change/").content.decode()
    assert "11 Mar 2026" in page and "9 in 10 similar orders shipped by 12 Mar 2026" in page
    assert "Likely late" in page
    assert "/admin/tracking/productionfile/file/?issuer=" in page


def test_pure_prediction_matches_the_stored_one():
    """The backtest's path (samples in memory) and the database's give the same dates."""
    samples = [("X", "A", "CARD_PROD_ONGOING", h * 3600.0) for h in (10, 20, 60)]
    samples += [("X", "A", "CARD_PROD_DONE", 5 * 3600.0)] * 3
    history = History.from_samples(samples, min_count=2)
    found = predict(
        history=history,
        issuer_id="X",
        site="A",
        stage="CARD_PROD_ONGOING",
        entered_at=NOW - 2 * HOUR,
        now=NOW,
    )
    assert (found.p50, found.p90, found.basis) == (
        dt.date(2026, 3, 11),
        dt.date(2026, 3, 12),
        Basis.ISSUER_SITE,
    )


def test_refresh_writes_only_the_predictions_that_moved(history, issuer):
    """A refresh re-predicts every open order but writes only what changed: nothing when
    nothing did, and an order late in its stage as the clock moves it (not the others)."""
    on_time = open_order(issuer, site="SITE-A")
    late = open_order(issuer, site="SITE-A", hours_ago=30)
    first = insight_refresh(now=NOW)
    assert (first.predictions, first.predictions_written) == (2, 2)
    again = insight_refresh(now=NOW + HOUR)
    assert (again.predictions, again.predictions_written, again.predictions_removed) == (2, 0, 0)
    # A day later the late order still has its last stage ahead: now + 5 h is 03-11 17:00.
    # The other is still predicted at entry + 20 h (03-11 06:00) and entry + 52 h (03-12).
    later = insight_refresh(now=NOW + DAY)
    assert later.predictions_written == 1
    assert (prediction(late).p50, prediction(late).p90) == (dt.date(2026, 3, 11),) * 2
    assert (prediction(on_time).p50, prediction(on_time).p90) == (
        dt.date(2026, 3, 11),
        dt.date(2026, 3, 12),
    )


def test_the_order_and_its_file_carry_the_predicted_dates(history, issuer):
    """The orders list sorts on the order's own copy of p50; the files list shows the latest
    p50 and p90 of the file's open orders. Both follow the predictions."""
    from tracking.insight.production_files import file_forecast
    from tracking.models import CardOrder, ProductionFile

    on_time = open_order(issuer, site="SITE-A")
    late = open_order(issuer, site="SITE-A", hours_ago=30)
    refresh()
    dates = dict(CardOrder.objects.values_list("pk", "predicted_ship_date"))
    assert (dates[on_time.pk], dates[late.pk]) == (dt.date(2026, 3, 11), dt.date(2026, 3, 10))
    assert sum(1 for date in dates.values() if date is not None) == 2
    file = ProductionFile.objects.get(issuer=issuer, name="FILE_A.csv")
    assert (file.predicted_p50, file.predicted_p90) == (dt.date(2026, 3, 11), dt.date(2026, 3, 12))
    # Two open orders predicted; the on-time one (p50 03-11) passes its due date (03-10).
    forecast = file_forecast(issuer_id=issuer.pk, name="FILE_A.csv")
    assert (forecast.predicted, forecast.likely_late) == (2, 1)
    assert (forecast.latest_p50, forecast.latest_p90) == (
        dt.date(2026, 3, 11),
        dt.date(2026, 3, 12),
    )
    # The on-time order ships: its date goes, and the file's dates are the late order's.
    event = on_time.events.first().payload
    post_items(
        issuer,
        [
            {
                **event,
                "status": "SUCCESSFUL",
                "details": {**event["details"], "status": "CARD_SHIPPED"},
            }
        ],
        NOW + HOUR,
    )
    insight_refresh(now=NOW + 2 * HOUR)
    dates = dict(CardOrder.objects.values_list("pk", "predicted_ship_date"))
    assert (dates[on_time.pk], dates[late.pk]) == (None, dt.date(2026, 3, 10))
    file.refresh_from_db()
    assert (file.predicted_p50, file.predicted_p90) == (dt.date(2026, 3, 10), dt.date(2026, 3, 11))
    forecast = file_forecast(issuer_id=issuer.pk, name="FILE_A.csv")
    assert (forecast.predicted, forecast.likely_late) == (1, 0)
