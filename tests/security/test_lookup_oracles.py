"""A viewer cannot learn a masked value by asking the lists, the export or the API yes/no questions.

Each test is an attack that used to work: a URL lookup, a search or an API filter whose answer
(with or without the row) confirmed one guess of a personal field at a time.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_client
from tracking.models import CardOrder

pytestmark = pytest.mark.django_db

TRACKING_NUMBER = "1Z999AA10123456784"
ORDERS = "/admin/tracking/cardorder/"


@pytest.fixture
def loaded(issuer, post_notification):
    for body in spec.ALL_IN_ORDER:
        post_notification(body)
    post_notification(b'{"operations": [{"cardId": "card-9", "note": "Jane Doe, 1 Main St"')


@pytest.fixture
def viewer(client, viewer_user):
    client.force_login(viewer_user)
    return client


@pytest.mark.parametrize(
    "url",
    [
        f"{ORDERS}?card_id=card-000123&tracking_number__startswith=1Z9",
        f"{ORDERS}?tracking_number={TRACKING_NUMBER}",
        f"{ORDERS}?shipment__message__icontains=front",
        f"{ORDERS}export.csv?tracking_number__startswith=1Z9",
        "/admin/tracking/operationevent/?payload__details__shipment__message__icontains=door",
        "/admin/tracking/operationevent/?order__tracking_number__startswith=1Z",
        "/admin/tracking/notificationdelivery/?body__contains=Jane",
    ],
)
def test_a_viewer_cannot_filter_on_a_field_the_list_does_not_offer(loaded, viewer, url):
    right = viewer.get(url)
    wrong = viewer.get(url.replace("1Z9", "XX0").replace("front", "back").replace("Jane", "Paul"))

    assert right.status_code == wrong.status_code == 400


def test_nobody_filters_through_lookups_the_list_does_not_offer(loaded, client, staff_user):
    # Operators see the value anyway; the rule is the same for every list and every role.
    client.force_login(staff_user)
    assert client.get(f"{ORDERS}?tracking_number__startswith=1Z9").status_code == 400
    assert client.get(f"{ORDERS}?carrier=ups").status_code == 200  # the carrier filter


def test_every_portal_list_refuses_lookups_it_does_not_offer(loaded, client):
    root = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    client.force_login(root)
    portal_admins = [
        model
        for model in admin.site._registry
        if model._meta.app_label in ("tracking", "auth")
        and not model._meta.model_name.startswith("historical")
    ]
    assert CardOrder in portal_admins
    for model in portal_admins:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
        assert client.get(f"{url}?id__gte=0").status_code == 400, url


def test_the_lists_own_filters_and_the_dashboard_links_still_work(loaded, viewer):
    day = "2026-01-01T00:00:00+00:00"
    for path, params in (
        (ORDERS, {"queue": "open", "carrier": "ups", "production_status": "CARD_SHIPPED"}),
        (ORDERS, {"first_event_at_from": "2026-01-01"}),
        ("/admin/tracking/notificationdelivery/", {"received_at__gte": day, "refused": "yes"}),
        (
            "/admin/tracking/operationevent/",
            {"outcome__exact": "stale", "first_received_at__gte": day},
        ),
        (
            "/admin/tracking/reconcileattempt/",
            {"outcome__exact": "changed", "started_at__gte": day},
        ),
    ):
        response = viewer.get(path, params)
        assert response.status_code == 200, (path, params)
        assert "?e=1" not in response.get("Location", "")


def test_a_viewer_cannot_confirm_a_tracking_number_by_exact_search(loaded, viewer, client):
    right = viewer.get(ORDERS, {"q": TRACKING_NUMBER})
    wrong = viewer.get(ORDERS, {"q": "1Z999AA10123456785"})

    assert right.status_code == wrong.status_code == 200  # no redirect to the order
    assert "card-000123" not in right.content.decode()
    by_card = viewer.get(ORDERS, {"q": "card-000123"})
    assert by_card.status_code == 302  # the other ids still open the order


def test_an_operator_still_finds_an_order_by_its_tracking_number(loaded, client, staff_user):
    client.force_login(staff_user)
    response = client.get(ORDERS, {"q": TRACKING_NUMBER})
    order = CardOrder.objects.get(card_id="card-000123")
    assert response.status_code == 302
    assert response["Location"].endswith(f"/{order.pk}/change/")


def test_the_read_api_refuses_a_viewer_the_tracking_number_filter(loaded, viewer_user, staff_user):
    viewer_api = read_api_client(viewer_user)
    right = viewer_api.get("/api/v1/orders/", {"tracking_number": TRACKING_NUMBER})
    wrong = viewer_api.get("/api/v1/orders/", {"tracking_number": "1Z999AA10123456785"})

    assert right.status_code == wrong.status_code == 403
    assert "personal" in right.json()["detail"]
    found = read_api_client(staff_user).get("/api/v1/orders/", {"tracking_number": TRACKING_NUMBER})
    assert [o["card_id"] for o in found.json()["results"]] == ["card-000123"]


def test_the_export_obeys_the_search_rule_too(loaded, viewer):
    response = viewer.get(f"{ORDERS}export.csv", {"q": TRACKING_NUMBER})
    body = b"".join(response.streaming_content).decode()
    assert "card-000123" not in body


@pytest.mark.parametrize(
    "cursor",
    [
        "bm90LWEtY3Vyc29y",  # base64 of "not-a-cursor": no position
        "cD1hYmM=",  # p=abc: a position that is not an id
        "cD0xJTI3",  # p=1': quote characters
        "%%%",
        "bz05OTk5OTk5OTk5OTk5OTk5OTk5OTk5",  # o=huge offset
    ],
)
def test_a_crafted_cursor_never_answers_500(loaded, staff_user, cursor):
    response = read_api_client(staff_user).get(f"/api/v1/orders/?cursor={cursor}")
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert "cursor" in response.json()


def test_a_cursor_with_a_non_numeric_position_is_a_client_error(loaded, staff_user):
    response = read_api_client(staff_user).get("/api/v1/orders/?cursor=cD1hYmM=")
    assert response.status_code == 400
    assert response.json() == {"cursor": ["Invalid cursor"]}


def test_anonymous_callers_get_no_lists(loaded):
    assert APIClient().get("/api/v1/orders/").status_code in (401, 403)
