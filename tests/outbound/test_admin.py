"""The back office: endpoints added within the admin's permissions, the secret shown once,
rotation and replay (audited), deliveries with their answers, and an order's events."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from standardwebhooks.webhooks import Webhook

from tests.conftest import make_staff
from tracking.models import AuditEntry, CardOrder
from tracking.models.outbound import EventDelivery, EventEndpoint, OutboundEvent
from tracking.outbound.delivery import deliveries_sweep
from tracking.services import roles

pytestmark = pytest.mark.django_db

ADD = "/admin/tracking/eventendpoint/add/"


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def administrator(db) -> Client:
    return client_of(make_staff("events-admin", roles.ADMINISTRATORS))


def step(status: str) -> dict:
    return {
        "operationId": "op-adm-1",
        "operation": "PRODUCE",
        "status": "PENDING",
        "startTime": "2026-03-02T09:15:04.120Z",
        "cardId": "card-adm-1",
        "details": {"status": status},
    }


def shown_secret(html: str) -> str:
    return re.search(r'id="endpoint-secret">(whsec_[^<]+)<', html).group(1)


def test_an_administrator_adds_an_endpoint_and_sees_its_secret_once(
    administrator, issuer, receiver, post_notification
):
    response = administrator.post(
        ADD,
        {"issuer": issuer.pk, "url": receiver.url, "description": "CRM", "enabled": "on"},
    )
    assert response.status_code == 200, response.content[:2000]
    receiver.secret = shown_secret(response.content.decode())
    endpoint = EventEndpoint.objects.get()
    page = administrator.get(f"/admin/tracking/eventendpoint/{endpoint.pk}/change/")
    assert page.status_code == 200 and receiver.secret not in page.content.decode()
    assert AuditEntry.objects.filter(action="event_endpoint.create").count() == 1

    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    deliveries_sweep()
    assert [r.event["type"] for r in receiver.verified] == ["card_order.stage_changed"]

    deliveries = administrator.get(
        f"/admin/tracking/eventdelivery/?endpoint__id__exact={endpoint.pk}"
    )
    html = deliveries.content.decode()
    assert deliveries.status_code == 200
    assert OutboundEvent.objects.get().event_id in html and "Delivered" in html
    assert "&quot;ok&quot;: true" in html  # the answer's first bytes

    order = CardOrder.objects.get(card_id="card-adm-1")
    order_page = administrator.get(f"/admin/tracking/cardorder/{order.pk}/change/")
    assert "Events sent to the issuer" in order_page.content.decode()
    assert "card_order.stage_changed" in order_page.content.decode()


def test_a_private_address_is_refused_in_the_form(administrator, issuer, settings):
    settings.EVENT_ENDPOINT_ALLOWED_NETWORKS = []
    response = administrator.post(
        ADD, {"issuer": issuer.pk, "url": "http://169.254.169.254/latest", "enabled": "on"}
    )
    assert response.status_code == 200
    assert "may not be sent" in response.content.decode()
    assert not EventEndpoint.objects.exists()


def test_rotate_shows_the_new_secret_once_and_replay_sends_again(
    administrator, endpoint, receiver, post_notification
):
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    deliveries_sweep()
    rotated = administrator.post(f"/admin/tracking/eventendpoint/{endpoint.pk}/rotate/")
    assert rotated.status_code == 200
    new = shown_secret(rotated.content.decode())
    event = OutboundEvent.objects.get()

    replayed = administrator.post(
        f"/admin/tracking/eventendpoint/{endpoint.pk}/replay/", {"event_id": event.event_id}
    )
    assert replayed.status_code == 302
    deliveries_sweep()
    again = receiver.verified[-1]
    assert again.headers["webhook-id"] == event.event_id
    Webhook(new).verify(again.body, again.headers)  # signed with the new secret too
    assert EventDelivery.objects.filter(is_replay=True).count() == 1
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"event_endpoint.rotate", "event_endpoint.replay"} <= actions


def test_replay_needs_one_event_or_a_time(administrator, endpoint):
    response = administrator.post(f"/admin/tracking/eventendpoint/{endpoint.pk}/replay/", {})
    assert response.status_code == 200 and "not both" in response.content.decode()
    response = administrator.post(
        f"/admin/tracking/eventendpoint/{endpoint.pk}/replay/", {"event_id": "evt_nope"}
    )
    assert "No event of this issuer" in response.content.decode()


def test_operators_may_not_manage_endpoints(endpoint):
    operator = client_of(make_staff("operator", roles.OPERATORS))
    assert operator.get(ADD).status_code == 403
    assert operator.post(f"/admin/tracking/eventendpoint/{endpoint.pk}/rotate/").status_code == 403
    assert operator.post(f"/admin/tracking/eventendpoint/{endpoint.pk}/replay/").status_code == 403
    assert get_user_model().objects.filter(username="operator").exists()
