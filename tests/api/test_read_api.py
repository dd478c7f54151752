"""The read API: who may read, filters, cursor pagination, the timeline, and the schema."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tests.fixtures import spec_examples as spec
from tracking.models import CardOrder

pytestmark = pytest.mark.django_db


@pytest.fixture
def loaded(issuer, post_notification):
    for body in spec.ALL_IN_ORDER:
        post_notification(body)


def test_anonymous_and_non_staff_users_are_refused(loaded):
    anonymous = APIClient()
    assert anonymous.get("/api/v1/orders/").status_code in (401, 403)
    user = get_user_model().objects.create_user("customer", password="pw-12345-long")
    client = APIClient()
    client.force_authenticate(user)
    assert client.get("/api/v1/orders/").status_code == 403


def test_staff_session_can_read(loaded, staff_user):
    client = APIClient()
    client.force_login(staff_user)

    answer = client.get("/api/v1/orders/")

    assert answer.status_code == 200
    listed = {order["card_id"] for order in answer.json()["results"]}
    assert listed == set(CardOrder.objects.values_list("card_id", flat=True))
    assert listed  # the notifications made orders, and staff see every one of them


@pytest.mark.parametrize(
    ("params", "cards"),
    [
        ({"card_id": "card-000456"}, {"card-000456"}),
        ({"operation_id": "op-0f1e2d3c4b5a6978"}, {"card-000999"}),
        ({"issuer_request_id": "row-0002"}, {"card-100002"}),
        ({"production_status": "CARD_SHIPPED"}, {"card-000123"}),
        ({"operation_status": "FAILED"}, {"card-000999"}),
        ({"needs_reconcile": "true"}, {"card-000789"}),
        ({"issuer_id": spec.ISSUER_ID, "production_status": "DATA_PREPARED"}, {"card-100001"}),
        ({"issuer_id": "OTHERISSUE"}, set()),
    ],
)
def test_filters(loaded, api, params, cards):
    results = api.get("/api/v1/orders/", params).json()["results"]
    assert {o["card_id"] for o in results} == cards


def test_cursor_pagination_walks_every_order_once(loaded, api):
    seen, url = [], "/api/v1/orders/?page_size=4"
    while url:
        page = api.get(url).json()
        seen += [o["id"] for o in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 6


def test_detail_lists_events_in_timeline_order_with_their_fields(loaded, api):
    order = api.get("/api/v1/orders/", {"card_id": "card-000123"}).json()["results"][0]
    events = api.get(f"/api/v1/orders/{order['id']}/").json()["events"]
    assert len(events) == 7
    assert set(events[0]) >= {
        "source",
        "received_at",
        "times_received",
        "operation_status",
        "production_status",
        "outcome",
        "payload",
    }
    assert events[0]["source"] == "webhook"
    times = [e["received_at"] for e in events]
    assert times == sorted(times)


def test_order_fields_are_the_documented_set(loaded, api):
    order = api.get("/api/v1/orders/", {"card_id": "card-000123"}).json()["results"][0]
    assert set(order) >= {
        "id", "issuer_id", "card_id", "operation_id", "operation", "operation_status",
        "production_status", "is_terminal", "start_time", "end_time", "issuer_request_id",
        "input_file_name", "production_site", "due_date", "reason", "error_code", "error",
        "shipment", "needs_reconcile", "reconcile_reason", "event_count",
    }  # fmt: skip
    assert order["issuer_id"] == spec.ISSUER_ID


def test_openapi_schema_describes_the_webhook_and_the_api(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/notifications/d1/v2/issuers/{issuer_id}/cards" in paths
    assert "/api/v1/orders/" in paths


def test_api_list_query_count_does_not_grow_with_orders(
    issuer, post_notification, api, django_assert_max_num_queries
):
    for n in range(30):
        item = {**spec.E6["operations"][0], "cardId": f"card-q{n}", "operationId": f"op-q{n}"}
        post_notification({"operations": [item]})
    with django_assert_max_num_queries(4):
        assert len(api.get("/api/v1/orders/").json()["results"]) == 30
