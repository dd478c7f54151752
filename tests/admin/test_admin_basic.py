"""The admin order list and order page: bounded queries, search, evidence read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.fixtures import spec_examples as spec
from tracking.models import CardOrder, OperationEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-long-123")
    client.force_login(user)
    return client


def load_orders(post_notification, count: int) -> None:
    for n in range(count):
        item = {**spec.E6["operations"][0], "cardId": f"card-a{n}", "operationId": f"op-a{n}"}
        post_notification({"operations": [item]})


def count_queries(client, url: str) -> tuple[int, bytes]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), response.content


def test_order_list_queries_do_not_grow_with_orders(
    issuer, post_notification, admin_client_logged_in
):
    load_orders(post_notification, 5)
    count_queries(admin_client_logged_in, "/admin/tracking/cardorder/")  # caches the sites
    few, _ = count_queries(admin_client_logged_in, "/admin/tracking/cardorder/")
    load_orders(post_notification, 40)
    many, content = count_queries(admin_client_logged_in, "/admin/tracking/cardorder/")
    assert many == few <= 15
    assert b"card-a39" in content


def test_search_by_tracking_number_finds_the_order(
    issuer, post_notification, admin_client_logged_in
):
    for body in spec.ALL_IN_ORDER:
        post_notification(body)
    response = admin_client_logged_in.get(
        "/admin/tracking/cardorder/", {"q": "1Z999AA10123456784"}, follow=True
    )
    # One order has that tracking number: the search opens its page.
    assert response.redirect_chain
    assert b"card-000123" in response.content
    assert b"card-000456" not in response.content


def test_order_page_shows_events_and_nothing_is_editable(
    issuer, post_notification, admin_client_logged_in
):
    post_notification(spec.E9A)
    post_notification(spec.E9B)
    order = CardOrder.objects.get()

    page = admin_client_logged_in.get(f"/admin/tracking/cardorder/{order.pk}/change/")

    assert page.status_code == 200
    assert b"CARD_PROD_ONGOING" in page.content
    assert b"stale" in page.content.lower()
    event = OperationEvent.objects.first()
    assert (
        admin_client_logged_in.post(
            f"/admin/tracking/operationevent/{event.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    assert OperationEvent.objects.filter(pk=event.pk).exists()
