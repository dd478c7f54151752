"""Delivery: signed by the Standard Webhooks library, verified by a real receiver, retried."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.fixtures.spec_examples import ISSUER_ID
from tracking.models import AuditEntry, Issuer
from tracking.models.outbound import DeliveryStatus, EventDelivery, OutboundEvent
from tracking.observability.alerts import alerts_current
from tracking.outbound.delivery import deliveries_sweep
from tracking.services.audit import Actor
from tracking.services.event_endpoints import endpoint_create, endpoint_secret_rotate, events_replay

pytestmark = pytest.mark.django_db

ACTOR = Actor.of_command("tests")


def step(status: str, *, card: str = "card-ev-1", op_status: str = "PENDING") -> dict:
    return {
        "operationId": f"op-{card}",
        "operation": "PRODUCE",
        "status": op_status,
        "startTime": "2026-03-02T09:15:04.120Z",
        "cardId": card,
        "details": {"status": status},
    }


def test_each_change_arrives_signed_and_verifies_with_the_library(
    endpoint, receiver, post_notification
):
    assert post_notification({"operations": [step("CARD_PROD_REQUESTED")]}).status_code == 204
    assert post_notification({"operations": [step("DATA_PREPARED")]}).status_code == 204
    assert post_notification({"operations": [step("DATA_PREPARED")]}).status_code == 204  # copy
    deliveries_sweep()

    events = list(OutboundEvent.objects.order_by("id"))
    assert [r.headers["webhook-id"] for r in receiver.verified] == [e.event_id for e in events]
    first, second = (r.event for r in receiver.verified)
    assert first["type"] == second["type"] == "card_order.stage_changed"
    assert first["data"]["order"]["production_status"] == "CARD_PROD_REQUESTED"
    assert second["data"]["order"]["production_status"] == "DATA_PREPARED"
    assert [first["data"]["sequence"], second["data"]["sequence"]] == [1, 2]
    assert first["data"]["order"]["card_id"] == "card-ev-1"
    assert set(first) == {"type", "timestamp", "data"}
    assert EventDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 2
    attempt = EventDelivery.objects.first().tries.get()
    assert attempt.status_code == 200 and '"ok": true' in attempt.response_start


def test_a_wrong_secret_does_not_verify(endpoint, receiver, post_notification):
    receiver.secret = "whsec_" + "QUJD" * 8  # not the endpoint's
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    deliveries_sweep()
    assert receiver.received and not receiver.verified
    delivery = EventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code == 400


def test_only_the_types_an_endpoint_wants_are_sent(issuer, receiver, post_notification):
    _, receiver.secret = endpoint_create(
        issuer=issuer, url=receiver.url, event_types=["card_order.shipped"], actor=ACTOR
    )
    post_notification({"operations": [step("CARD_PROD_REQUESTED"), step("CARD_SHIPPED")]})
    deliveries_sweep()
    assert [r.event["type"] for r in receiver.verified] == ["card_order.shipped"]


def test_receiver_down_then_back_gets_every_event_with_the_same_webhook_id(
    endpoint, receiver, post_notification
):
    receiver.answer = lambda: 503
    for status in ("CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY"):
        post_notification({"operations": [step(status)]})
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        for _ in range(6):  # down for 42 hours: every due delivery fails and is retried later
            deliveries_sweep()
            clock.shift(dt.timedelta(hours=7))
        receiver.answer = lambda: 200
        deliveries_sweep()

    events = {e.event_id for e in OutboundEvent.objects.all()}
    assert len(events) == 3
    refused = [r for r in receiver.received if r.status == 503]
    accepted = [r for r in receiver.received if r.status == 200]
    assert len(refused) >= 6 and {r.headers["webhook-id"] for r in refused} == events
    # Every event arrives, once, once the receiver is back; none is lost.
    assert sorted(r.headers["webhook-id"] for r in accepted) == sorted(events)
    for delivery in EventDelivery.objects.all():
        assert delivery.status == DeliveryStatus.DELIVERED
        assert delivery.tries.count() == delivery.attempts >= 2
    # The retries of one event are the same message (same id, same body), newly signed.
    by_id: dict[str, set[bytes]] = {}
    for r in receiver.received:
        by_id.setdefault(r.headers["webhook-id"], set()).add(r.body)
    assert all(len(bodies) == 1 for bodies in by_id.values())


def test_a_delivery_gives_up_after_three_days(endpoint, receiver, post_notification):
    receiver.answer = lambda: 500
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        for _ in range(20):
            deliveries_sweep()
            clock.shift(dt.timedelta(hours=6, minutes=30))
    delivery = EventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.GAVE_UP
    assert delivery.attempts >= 5


def test_an_endpoint_failing_too_long_is_disabled_with_an_alert(
    endpoint, receiver, post_notification, settings
):
    settings.EVENT_ENDPOINT_DISABLE_AFTER = dt.timedelta(hours=12)
    receiver.answer = lambda: 502
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        for _ in range(4):
            deliveries_sweep()
            clock.shift(dt.timedelta(hours=7))
        endpoint.refresh_from_db()
        assert not endpoint.enabled and endpoint.disabled_at is not None
        assert "HTTP 502" in endpoint.disabled_reason
        alerts = [a for a in alerts_current() if a.kind == "event_endpoint_disabled"]
        assert [a.subject for a in alerts] == [ISSUER_ID]
        assert endpoint.url in alerts[0].message

        # Disabled: nothing more is sent, and new events owe it nothing.
        sent = len(receiver.received)
        clock.shift(dt.timedelta(hours=7))
        deliveries_sweep()
        post_notification({"operations": [step("DATA_PREPARED")]})
        deliveries_sweep()
    assert len(receiver.received) == sent
    assert EventDelivery.objects.count() == 1


def test_replay_one_event_and_every_event_since_a_time(endpoint, receiver, post_notification):
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    post_notification({"operations": [step("DATA_PREPARED")]})
    deliveries_sweep()
    first, second = OutboundEvent.objects.order_by("id")
    assert len(receiver.verified) == 2

    events_replay(endpoint=endpoint, event=first, actor=ACTOR)
    deliveries_sweep()
    assert receiver.verified[-1].headers["webhook-id"] == first.event_id
    assert receiver.verified[-1].body == receiver.verified[0].body

    events_replay(endpoint=endpoint, since=first.created_at, actor=ACTOR)
    deliveries_sweep()
    assert [r.headers["webhook-id"] for r in receiver.verified[3:]] == [
        first.event_id,
        second.event_id,
    ]
    replays = AuditEntry.objects.filter(action="event_endpoint.replay").order_by("id")
    assert [e.details["events"] for e in replays] == [1, 2]


def test_replay_refuses_another_issuers_event(endpoint, post_notification):
    other = Issuer.objects.create(issuer_id="OTHERBANK1", name="Other")
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    event = OutboundEvent.objects.get()
    mine, _ = endpoint_create(issuer=other, url=endpoint.url, actor=ACTOR)
    with pytest.raises(ValueError, match="another issuer"):
        events_replay(endpoint=mine, event=event, actor=ACTOR)


def test_a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(
    endpoint, receiver, post_notification, settings
):
    old = receiver.secret
    new = endpoint_secret_rotate(endpoint=endpoint, actor=ACTOR)
    assert new != old and new.startswith("whsec_")
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    deliveries_sweep()
    signed = receiver.verified[-1]
    assert len(signed.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(signed.body, signed.headers)  # both verify during the overlap

    with time_machine.travel(timezone.now() + settings.EVENT_SECRET_ROTATION_OVERLAP * 2):
        post_notification({"operations": [step("DATA_PREPARED")]})
        deliveries_sweep()
        signed = receiver.received[-1]
        assert len(signed.headers["webhook-signature"].split(" ")) == 1
        Webhook(new).verify(signed.body, signed.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(signed.body, signed.headers)
    assert AuditEntry.objects.filter(action="event_endpoint.rotate").count() == 1


def test_a_registered_order_and_its_silence_are_events(endpoint, receiver, staff_user, settings):
    from tracking.outbound.outbox import silent_sweep
    from tracking.services.registration import Registration, orders_register

    orders_register(
        registrations=[Registration(issuer_id=ISSUER_ID, card_id="card-reg-1", operation_id="")],
        actor=ACTOR,
    )
    with time_machine.travel(timezone.now() + settings.REGISTERED_SILENT_AFTER * 2):
        assert silent_sweep() == 1
        assert silent_sweep() == 0  # once
        deliveries_sweep()
    assert [r.event["type"] for r in receiver.verified] == [
        "card_order.registered",
        "card_order.silent",
    ]
    assert json.loads(receiver.verified[0].body)["data"]["order"]["awaiting_first_event"]


def test_a_secret_the_key_cannot_decrypt_is_an_attempt_with_its_error_and_kept(
    endpoint, receiver, post_notification, settings
):
    post_notification({"operations": [step("CARD_PROD_REQUESTED")]})
    settings.EVENT_SECRET_KEY = "another key"
    deliveries_sweep()
    delivery = EventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and receiver.received == []
    assert "cannot be decrypted" in delivery.tries.get().error
    settings.EVENT_SECRET_KEY = ""  # the key back: the next attempt goes out
    with time_machine.travel(timezone.now() + dt.timedelta(hours=1)):
        deliveries_sweep()
    assert EventDelivery.objects.get().status == DeliveryStatus.DELIVERED
