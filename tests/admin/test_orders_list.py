"""The orders list: the queues, the filters, the id search and its cost per page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.fixtures.backoffice import Card, post_items
from tracking.domain import conditions
from tracking.models import CardOrder, Issuer, OrderAcknowledgement

pytestmark = pytest.mark.django_db

LIST = "/admin/tracking/cardorder/"


def listed_cards(response) -> set[str]:
    """The card ids the list page shows."""
    assert response.status_code == 200, response.status_code
    return set(
        re.findall(r'bo-id" href="[^"]+" title="[^"]*">(card-\d+)</a>', response.content.decode())
    )


def card(orders, name) -> str:
    return CardOrder.objects.get(pk=orders[name]).card_id


# ---------------------------------------------------------------------------- cost per page


def test_a_page_costs_a_fixed_number_of_queries_and_no_count(boss, orders):
    with CaptureQueriesContext(connection) as queries:
        response = boss.get(LIST)
    assert response.status_code == 200
    sql = [q["sql"].upper() for q in queries.captured_queries]
    # session, user, issuers (for the filter and the issuer column) and sites, the page of
    # orders (issuer joined),
    # and the row count, which stops at 10,001 rows whatever the table's size
    assert len(sql) <= 8, "\n".join(sql)
    counts = [s for s in sql if "COUNT(" in s]
    assert counts and all("LIMIT 10001" in s for s in counts), "the list counted the table"


def test_the_query_count_does_not_grow_with_the_rows(boss, orders, bo_issuer):
    def queries_for(url):
        with CaptureQueriesContext(connection) as captured:
            assert boss.get(url).status_code == 200
        return len(captured)

    queries_for(LIST)  # the known production sites are read once, then cached
    before = queries_for(LIST)
    more = Card("card-555555", "op-5555", "BATCH_X.csv", "req-5555")
    for status in ("CARD_PROD_REQUESTED", "DATA_PREPARED"):
        post_items(bo_issuer, [more.item(status)], timezone.now())
    assert queries_for(LIST) == before
    assert queries_for(LIST + "?queue=exceptions") == before


# ---------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("card_id", "card-000999"),
        ("operation_id", "op-0999a7c9e2b41f"),
        ("issuer_request_id", "req-2026-11-0999"),
    ],
)
def test_an_exact_id_opens_the_order(boss, orders, field, value):
    response = boss.get(LIST, {"q": value})
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}{orders['exception']}/change/"


def test_a_tracking_number_opens_the_order_through_equality_not_like(boss, orders):
    with CaptureQueriesContext(connection) as queries:
        response = boss.get(LIST, {"q": "1Z999AA10123456784"})
    assert response["Location"] == f"{LIST}{orders['shipped']}/change/"
    order_queries = [q["sql"] for q in queries if "tracking_cardorder" in q["sql"]]
    assert order_queries, "no order query ran"
    assert all(" LIKE " not in q.upper() for q in order_queries), order_queries
    assert any('"tracking_number" = ' in q for q in order_queries), order_queries


def test_an_id_shared_by_two_orders_lists_both(boss, orders, bo_issuer):
    again = Card("card-000999", "op-reissue-0999", "BATCH_R.csv", "req-r-0999")
    post_items(bo_issuer, [again.item("CARD_PROD_REQUESTED")], timezone.now())
    response = boss.get(LIST, {"q": "card-000999"})
    assert response.status_code == 200
    assert response.content.decode().count('href="/admin/tracking/cardorder/') >= 2
    assert listed_cards(response) == {"card-000999"}


def test_part_of_a_file_name_finds_the_orders_of_that_file(boss, orders):
    response = boss.get(LIST, {"q": "20261121_us"})
    cards = listed_cards(response)
    assert card(orders, "delivered") in cards and card(orders, "gap") in cards
    assert card(orders, "shipped") not in cards  # in the EU file


def test_an_unknown_id_falls_back_to_the_file_name_and_finds_nothing(boss, orders):
    with CaptureQueriesContext(connection) as queries:
        response = boss.get(LIST, {"q": "nothing-like-this"})
    assert listed_cards(response) == set()
    assert any(" LIKE " in q["sql"].upper() for q in queries.captured_queries)


# ---------------------------------------------------------------------------- queues and filters


def test_exceptions_queue(boss, orders):
    cards = listed_cards(boss.get(LIST, {"queue": "exceptions"}))
    assert cards == {card(orders, n) for n in ("exception", "conflict", "unknown")}


def test_an_acknowledged_exception_leaves_the_queue_until_a_new_event(boss, orders, bo_issuer):
    order = CardOrder.objects.get(pk=orders["exception"])
    OrderAcknowledgement.objects.create(order=order, note="Re-ordered with a shorter name")
    assert order.card_id not in listed_cards(boss.get(LIST, {"queue": "exceptions"}))
    assert order.card_id in listed_cards(boss.get(LIST, {"queue": "acknowledged"}))

    later = timezone.now() + dt.timedelta(minutes=5)
    news = Card(order.card_id, order.operation_id, order.input_file_name, order.issuer_request_id)
    failure = news.item("CARD_PROD_EXCEPTION", op_status="FAILED")
    post_items(bo_issuer, [failure], later)
    with time_machine.travel(later + dt.timedelta(minutes=1), tick=False):
        assert order.card_id in listed_cards(boss.get(LIST, {"queue": "exceptions"}))


def test_stuck_queue_uses_each_stage_threshold(boss, orders):
    cards = listed_cards(boss.get(LIST, {"queue": "stuck"}))
    assert card(orders, "stuck") in cards  # requested 4 days ago, threshold 1 h
    assert card(orders, "unknown") in cards  # prepared 29 h ago, threshold 6 h
    assert card(orders, "fresh") not in cards  # requested 10 min ago
    assert card(orders, "gap") not in cards  # ongoing for 2 h, threshold 1 d
    assert card(orders, "shipped") not in cards  # final
    within = listed_cards(boss.get(LIST, {"stage_age": "within"}))
    assert card(orders, "fresh") in within and card(orders, "gap") in within
    assert not within & cards


@pytest.mark.parametrize(
    ("params", "expected", "absent"),
    [
        ({"production_status": "CARD_SHIPPED"}, {"shipped", "delivered", "stale"}, {"conflict"}),
        ({"operation_status": "FAILED"}, {"exception", "cancelled", "conflict"}, {"shipped"}),
        ({"carrier": "fedex"}, {"delivered"}, {"shipped"}),
        ({"carrier": "__none__"}, {"fresh"}, {"shipped"}),
        ({"production_site": "PERSO-SITE-US-02"}, {"delivered", "gap"}, {"shipped"}),
        ({"reconcile_reason": "gap"}, {"gap"}, {"unknown"}),
        ({"reconcile_reason": "conflict"}, {"conflict"}, {"gap"}),
        ({"has_error": "yes"}, {"exception"}, {"cancelled"}),
        ({"queue": "cancelled"}, {"cancelled", "conflict"}, {"exception"}),
        ({"queue": "failed", "entered": "24h"}, {"exception"}, {"cancelled"}),
        ({"queue": "reconcile"}, {"gap", "unknown", "conflict"}, {"shipped"}),
        ({"due_date_from": "2026-11-25", "due_date_to": "2026-11-25"}, {"shipped"}, {"stale"}),
    ],
)
def test_filters(boss, orders, params, expected, absent):
    cards = listed_cards(boss.get(LIST, params))
    assert {card(orders, n) for n in expected} <= cards
    assert not {card(orders, n) for n in absent} & cards


def test_date_range_on_first_seen_counts_whole_days(boss, orders):
    # The day the fresh order was first seen (not the clock's: near midnight they differ).
    day = timezone.localdate(CardOrder.objects.get(pk=orders["fresh"]).first_event_at)
    cards = listed_cards(
        boss.get(LIST, {"first_event_at_from": day.isoformat(), "first_event_at_to": day})
    )
    assert card(orders, "fresh") in cards
    assert card(orders, "stuck") not in cards  # first seen four days ago


def test_filter_by_issuer(boss, orders, bo_issuer):
    other = Issuer.objects.create(issuer_id="OTHERBANK1", name="Other")
    assert listed_cards(boss.get(LIST, {"issuer": other.pk})) == set()
    assert card(orders, "fresh") in listed_cards(boss.get(LIST, {"issuer": bo_issuer.pk}))


# ---------------------------------------------------------------------------- who sees what


def test_staff_without_view_permission_cannot_see_the_list(admin_client_as, orders):
    assert admin_client_as().get(LIST).status_code == 403


def test_a_viewer_sees_the_list_but_cannot_add_change_or_delete(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    response = viewer.get(LIST)
    assert response.status_code == 200
    assert viewer.get(LIST + "add/").status_code == 403
    assert viewer.post(f"{LIST}{orders['shipped']}/delete/").status_code == 403
    assert viewer.post(f"{LIST}{orders['shipped']}/change/", {}).status_code == 403


def test_a_tracking_url_that_is_not_http_is_not_a_link(boss, orders):
    CardOrder.objects.filter(pk=orders["shipped"]).update(tracking_url="javascript:alert(1)")
    page = boss.get(LIST).content.decode()
    assert "javascript:alert" not in page


def test_viewers_see_the_list_with_tracking_numbers_masked(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    html = viewer.get(LIST).content.decode()
    assert "1Z999AA10123456784" not in html and "ups.com" not in html
    assert "•••••• (hidden)" in html
    # ... and the number finds nothing for them: a match would confirm a guess of it.
    response = viewer.get(LIST, {"q": "1Z999AA10123456784"})
    assert response.status_code == 200
    assert f"{LIST}{orders['shipped']}/change/" not in response.content.decode()


def test_the_order_page_and_the_queue_agree_on_what_an_exception_is(orders):
    queue = CardOrder.objects.filter(conditions.exception_q())
    in_queue = set(queue.values_list("pk", flat=True))
    assert in_queue == {o.pk for o in CardOrder.objects.all() if conditions.is_exception(o)}
    assert len(in_queue) >= 3
