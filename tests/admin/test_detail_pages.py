"""The evidence pages (D1 message, refused call, event, reconcile attempt) in staff's words.

Each page is opened as staff would open it; no field may be labelled with its code name
("Issuer id in path", "Http status", "Latency ms"), codes are shown with their labels, and D1's
answer on an attempt reads as it does in the attempts list, never as raw JSON.
"""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.utils import timezone

from tracking.models import (
    CardOrder,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
    RefusalTally,
)

pytestmark = pytest.mark.django_db

ANSWER = {
    "operationStatus": "PENDING",
    "productionStatus": "CARD_SHIPPED",
    "shipment": {"status": "IN_TRANSIT", "carrier": "DHL", "trackingNumber": "TRK-WORDING-77"},
}


def code_name(field) -> str:
    """What Django would print for a field given no verbose name: "issuer id in path"."""
    return field.name.replace("_", " ")


# Code names that are already the words staff and D1 support use.
PLAIN_ALREADY = {
    "correlation id",
    "error code",
    "card id",
    "operation id",
    "operation status",
    "times received",
}


def raw_names(model) -> set[str]:
    """The code names of a model's fields that are not plain words already ("error", "count")."""
    return {
        code_name(field)
        for field in model._meta.concrete_fields
        if "_" in field.name or field.name in ("fingerprint", "answer", "payload", "body")
    } - PLAIN_ALREADY


def field_labels(page) -> list[str]:
    """The labels of the page's fields, as rendered (lower case, without the colon)."""
    text = page.content.decode()
    found = re.findall(r"<label[^>]*>(.*?)</label>", text, flags=re.S)
    return [
        html.unescape(re.sub(r"<[^>]+>", "", label)).strip().rstrip(":").lower() for label in found
    ]


def assert_plain_labels(page, model) -> list[str]:
    assert page.status_code == 200
    labels = field_labels(page)
    assert labels, "the page shows no field labels"
    leaked = sorted(set(labels) & raw_names(model))
    assert not leaked, f"raw field names on the page: {leaked}"
    return labels


@pytest.fixture
def order(orders) -> CardOrder:
    return CardOrder.objects.get(pk=next(iter(orders.values())))


@pytest.fixture
def delivery(bo_issuer) -> NotificationDelivery:
    return NotificationDelivery.objects.create(
        issuer=bo_issuer,
        issuer_id_in_path=bo_issuer.issuer_id,
        correlation_id="corr-wording-1",
        status_code=400,
        error_code="PARSING_ERROR",
        error="the body is not JSON",
        body='{"cut',
        body_truncated=True,
        byte_size=70000,
    )


def test_d1_message_page_labels_every_field_in_words(boss, delivery):
    page = boss.get(f"/admin/tracking/notificationdelivery/{delivery.pk}/change/")

    labels = assert_plain_labels(page, NotificationDelivery)
    for plain in ("issuer id in the address", "caller's address", "refused items"):
        assert plain in labels
    text = page.content.decode()
    assert "Sent by D1" in text  # the source's label, with its code beside it
    assert ">webhook</code>" in text
    assert "cut short" in text


def test_refused_call_page_labels_every_field_in_words(boss, bo_issuer):
    now = timezone.now()
    tally = RefusalTally.objects.create(
        minute=now.replace(second=0, microsecond=0),
        source="203.0.113.7",
        status_code=401,
        error_code="INVALID_TOKEN",
        count=3,
        first_at=now - dt.timedelta(seconds=40),
        last_at=now,
        issuer_id_in_path=bo_issuer.issuer_id,
    )

    page = boss.get(f"/admin/tracking/refusaltally/{tally.pk}/change/")

    labels = assert_plain_labels(page, RefusalTally)
    assert {"issuer id in the address", "caller's address", "first call"} <= set(labels)
    text = page.content.decode()
    assert "401 refused" in text and "INVALID_TOKEN" in text


def test_event_page_shows_codes_with_their_labels(boss, bo_issuer, delivery):
    event = OperationEvent.objects.create(
        issuer=bo_issuer,
        delivery=delivery,
        fingerprint="a" * 64,
        card_id="card-wording-1",
        operation="PRODUCE",
        operation_status="PENDING",
        production_status="CARD_PROD_ONGOING",
        payload={"card": "card-wording-1"},
        outcome="stale",
    )

    page = boss.get(f"/admin/tracking/operationevent/{event.pk}/change/")

    labels = assert_plain_labels(page, OperationEvent)
    assert "content fingerprint" in labels
    text = page.content.decode()
    for label, code in (
        ("Being personalised", "CARD_PROD_ONGOING"),
        ("Out of order", "stale"),
        ("Card production", "PRODUCE"),
        ("In progress", "PENDING"),
    ):
        assert label in text and f">{code}</code>" in text, (label, code)


def test_attempt_page_shows_d1s_answer_as_the_list_does(boss, order, delivery):
    attempt = ReconcileAttempt.objects.create(
        order=order,
        reason="stage_threshold",
        outcome="changed",
        http_status=200,
        latency_ms=84,
        status_before="CARD_PROD_ONGOING",
        status_after="CARD_SHIPPED",
        answer=ANSWER,
        delivery=delivery,
    )

    page = boss.get(f"/admin/tracking/reconcileattempt/{attempt.pk}/change/")

    labels = assert_plain_labels(page, ReconcileAttempt)
    assert "d1's answer" in labels
    text = html.unescape(page.content.decode())
    assert '"productionStatus"' not in text and "productionStatus" not in text
    assert "Shipment: In transit" in text and "TRK-WORDING-77" in text
    assert "Too long in a stage" in text and ">stage_threshold</code>" in text
    assert "Corrected the order" in text
    assert "HTTP 200" in text and "84 ms" in text


def test_attempt_page_masks_the_tracking_number_for_viewers(client, viewer_user, order):
    attempt = ReconcileAttempt.objects.create(order=order, outcome="unchanged", answer=ANSWER)
    client.force_login(viewer_user)

    page = client.get(f"/admin/tracking/reconcileattempt/{attempt.pk}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "TRK-WORDING-77" not in text
    assert "Shipment: In transit" in html.unescape(text)
