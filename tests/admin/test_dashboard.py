"""The dashboard: its figures, their cost, and that every number opens the rows behind it."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.admin.test_orders_list import listed_cards
from tracking.models import CardOrder, Issuer, NotificationDelivery

pytestmark = pytest.mark.django_db


def test_the_dashboard_costs_a_fixed_number_of_queries(boss, orders):
    with CaptureQueriesContext(connection) as queries:
        response = boss.get("/admin/")
    assert response.status_code == 200
    # session, user, the figures' aggregates (13, silent orders, every queue's count and the
    # carrier words not understood included), the operator alerts' (13, silent orders per
    # issuer and disabled event endpoints included), and the last notification: the active
    # issuers, then one probe per issuer
    issuers = Issuer.objects.filter(is_active=True).count()
    assert len(queries) <= 26 + issuers, [q["sql"] for q in queries.captured_queries]


def test_viewers_within_the_cache_window_share_one_read_of_the_figures(boss, orders, settings):
    from django.core.cache import cache

    settings.DASHBOARD_CACHE_SECONDS = 60
    cache.delete("admin:dashboard-reads")
    first = boss.get("/admin/")
    with CaptureQueriesContext(connection) as queries:
        again = boss.get("/admin/")
    # Only the session and the user: the figures, alerts and last notifications are shared.
    assert len(queries) <= 3, [q["sql"] for q in queries.captured_queries]
    assert again.context["dashboard"].now == first.context["dashboard"].now
    assert "Figures as of" in again.content.decode()

    settings.DASHBOARD_CACHE_SECONDS = 0
    fresh = boss.get("/admin/")
    assert fresh.context["dashboard"].now > first.context["dashboard"].now
    cache.delete("admin:dashboard-reads")


def test_operator_alerts_are_shown_with_the_list_to_act_on(boss, orders):
    response = boss.get("/admin/")
    html = response.content.decode().replace("&amp;", "&")
    stuck = [row for row in response.context["alerts"] if row["alert"].kind == "orders_stuck"]
    assert stuck, response.context["alerts"]
    assert "stage_age=stuck" in stuck[0]["url"]
    assert f'href="{stuck[0]["url"]}"' in html
    assert str(stuck[0]["alert"].message) in html
    assert stuck[0]["alert"].severity.upper() in html  # the severity is written, not only coloured
    # What is wrong in words first, the alert's code only beside it.
    assert "Orders stuck in a stage" in html
    assert ">orders_stuck</code>" in html


def test_open_orders_per_stage_and_stuck_per_stage(boss, orders):
    figures = boss.get("/admin/").context["dashboard"]
    stages = {s.status: s for s in figures.stages}
    assert figures.open_orders == CardOrder.objects.filter(is_terminal=False).count()
    for status, stage in stages.items():
        assert stage.orders == CardOrder.objects.filter(production_status=status).count()
    assert "CARD_SHIPPED" not in stages  # final stages are counted over a window
    assert stages["CARD_PROD_REQUESTED"].stuck >= 1  # the order requested four days ago
    assert stages["CARD_PROD_REQUESTED"].orders > stages["CARD_PROD_REQUESTED"].stuck


def test_final_stages_in_the_last_24_hours_and_7_days(boss, orders):
    figures = boss.get("/admin/").context["dashboard"]
    assert figures.terminal["failed"] == {"24h": 1, "7d": 1}
    assert figures.terminal["cancelled"] == {"24h": 0, "7d": 2}
    assert figures.terminal["shipped"] == {"24h": 0, "7d": 3}


def test_notifications_per_hour_with_duplicate_and_out_of_order_rates(boss, orders):
    figures = boss.get("/admin/").context["dashboard"]
    assert len(figures.hours) == 24
    day = figures.last_24h
    stored = NotificationDelivery.objects.filter(received_at__gte=figures.hours[0].hour)
    assert day.deliveries == stored.count()
    assert day.duplicates == 2  # the item delivered three times, six hours ago
    assert day.duplicate_rate == pytest.approx(2 / day.items)
    assert day.rejected == 1


def test_every_number_links_to_the_rows_behind_it(boss, orders):
    response = boss.get("/admin/")
    html = response.content.decode()
    figures = response.context["dashboard"]
    for row in response.context["stage_rows"]:
        assert f'href="{row["orders_url"]}"' in html.replace("&amp;", "&")
        assert len(listed_cards(boss.get(row["orders_url"]))) == row["stage"].orders
        if row["stuck_url"]:
            assert len(listed_cards(boss.get(row["stuck_url"]))) == row["stage"].stuck
    links = response.context["links"]
    assert len(listed_cards(boss.get(links["exceptions"]))) == figures.open_exceptions
    assert len(listed_cards(boss.get(links["stuck"]))) == figures.total_stuck
    assert len(listed_cards(boss.get(links["reconcile"]))) == figures.needs_reconcile
    assert len(listed_cards(boss.get(links["open"]))) == figures.open_orders
    for row in response.context["terminal_rows"]:
        for window in ("24h", "7d"):
            shown = listed_cards(boss.get(row["urls"][window]))
            assert len(shown) == row["counts"][window], (row["title"], window)


def test_hourly_numbers_open_the_deliveries_and_events_of_that_hour(boss, orders):
    response = boss.get("/admin/")
    busiest = max(response.context["hour_rows"], key=lambda row: row["hour"].duplicates)
    deliveries = boss.get(busiest["duplicates_url"])
    assert deliveries.status_code == 200
    assert len(re.findall(r"accepted</span>", deliveries.content.decode())) == 2
    late = max(response.context["hour_rows"], key=lambda row: row["hour"].stale)
    stale = boss.get(late["stale_url"]).context["cl"].result_list
    assert len(stale) == late["hour"].stale > 0
    assert all(event.outcome == "stale" for event in stale)
    query = parse_qs(urlsplit(busiest["stale_url"]).query)
    assert query["outcome"] == ["stale"]
    assert boss.get(busiest["stale_url"]).status_code == 200


def test_staff_who_may_not_view_orders_see_no_figures(admin_client_as, orders):
    response = admin_client_as().get("/admin/")
    assert response.status_code == 200
    assert "dashboard" not in response.context


def test_the_notification_figure_opens_a_list_of_as_many_messages(boss, orders):
    response = boss.get("/admin/")
    figures = response.context["dashboard"]
    listed = boss.get(response.context["links"]["deliveries_24h"])
    assert len(listed.context["cl"].result_list) == figures.last_24h.deliveries


def test_the_last_notification_is_shown_per_issuer(boss, orders, bo_issuer):
    response = boss.get("/admin/")
    rows = response.context["last_notifications"]
    newest = NotificationDelivery.objects.filter(issuer=bo_issuer, source="webhook").latest(
        "received_at"
    )
    assert [(row["issuer"].pk, row["at"]) for row in rows] == [(bo_issuer.pk, newest.received_at)]
    assert 'id="last-notification"' in response.content.decode()


def test_empty_hours_have_no_rate_and_the_current_hour_is_shown(boss, orders):
    response = boss.get("/admin/")
    chart = json.loads(response.context["hourly_chart"])
    hours = response.context["dashboard"].hours
    duplicate_rates = chart["datasets"][1]["data"]
    for hour, rate in zip(hours, duplicate_rates, strict=True):
        assert (rate is None) == (hour.items == 0)
    assert chart["labels"][-1].endswith("(now)")


def test_a_window_bound_that_is_not_a_time_is_reported_not_applied(boss, orders):
    listed = boss.get("/admin/tracking/notificationdelivery/", {"received_at__gte": "yesterday"})
    assert listed.status_code == 200
    shown = [str(m) for m in listed.context["messages"]]
    assert any("'yesterday' is not a date and time" in m for m in shown), shown
    assert len(listed.context["cl"].result_list) == min(
        NotificationDelivery.objects.count(), listed.context["cl"].list_per_page
    )
