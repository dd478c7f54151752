"""Hostile and broken input: every refusal is a D1-style JSON error, kept for staff, never a 5xx.

The cases here are the ones a database would choke on (NUL, unpaired surrogates, infinity,
times that do not exist in UTC, strings longer than their columns) on top of those of
test_webhook_contract.py.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures import spec_examples as spec
from tracking.models import CardOrder, NotificationDelivery, OperationEvent

pytestmark = pytest.mark.django_db

ITEM = spec.E1["operations"][0]


def refused(response, status: int, error_code: str) -> NotificationDelivery:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"errorCode", "error"}
    assert body["errorCode"] == error_code
    assert body["error"]
    delivery = NotificationDelivery.objects.order_by("-id").first()
    assert (delivery.status_code, delivery.error_code) == (status, error_code)
    return delivery


@pytest.mark.parametrize(
    "body",
    [
        b'{"operations": [{"cardId": "card\\u0000x"}]}',
        b'{"operations": [{"cardId": "\\ud800"}]}',
        b'{"operations": [{"cardId": "x", "amount": 1e999}]}',
        b'{"operations": [{"cardId": 1' + b"0" * 5000 + b"}]}",
        b'{"operations": [{"cardId": "a\x00b"}]}',
        b'{"operations": [' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"]}",
    ],
    ids=["nul-escape", "lone-surrogate", "infinity", "huge-integer", "raw-nul", "deep"],
)
def test_bodies_no_column_could_hold_are_refused_400_and_kept(issuer, post_notification, body):
    delivery = refused(post_notification(body), 400, "PARSING_ERROR")

    assert "\x00" not in delivery.body
    assert OperationEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("startTime", "0001-01-01T00:00:00+14:00", "startTime"),
        ("endTime", "9999-12-31T23:59:59-14:00", "endTime"),
        ("startTime", "2026-13-01T00:00:00Z", "startTime"),
        ("status", "P" * 33, "status is longer"),
        ("productionSite", "S" * 256, "productionSite is longer"),
        ("trackingType", "T" * 33, "trackingType is longer"),
        ("issuerRequestId", ["a"], "issuerRequestId must be a string"),
        ("operationId", "", "operationId must not be empty"),
        ("cardId", "card 000123", "cardId must match"),
        ("cardId", None, "cardId is required"),
        ("details", {"status": "CARD_PROD_DONE", "trackingType": "T" * 33}, "details.trackingType"),
        ("details", {"status": {"nested": True}}, "details.status must be a string"),
    ],
)
def test_items_breaking_the_documented_rules_are_stored_invalid(
    issuer, post_notification, field, value, message
):
    item = {**ITEM, field: value}

    response = post_notification({"operations": [item]})

    refused(response, 400, "FIELD_INVALID_VALUE")
    event = OperationEvent.objects.get()
    assert event.outcome == "invalid"
    assert message in event.validation_error
    assert event.payload == item
    assert not CardOrder.objects.exists()


@pytest.mark.parametrize("item", [[ITEM], 42, "PRODUCE", None, True], ids=repr)
def test_items_of_the_wrong_type_are_stored_invalid(issuer, post_notification, item):
    refused(post_notification({"operations": [item]}), 400, "FIELD_INVALID_VALUE")

    assert OperationEvent.objects.get().payload == item


def test_a_size_claimed_above_the_cap_is_refused_before_the_body_is_read(
    issuer, post_notification, settings
):
    settings.D1_REJECTED_BODY_KEEP_BYTES = 16
    body = json.dumps(spec.E12)

    delivery = refused(
        post_notification(body, CONTENT_LENGTH=str(50 * 1024 * 1024)), 413, "PAYLOAD_TOO_LARGE"
    )

    assert delivery.byte_size == 50 * 1024 * 1024
    assert len(delivery.body) <= 16
    assert delivery.body_truncated


def test_refused_bodies_are_kept_capped(issuer, post_notification, settings):
    settings.D1_REJECTED_BODY_KEEP_BYTES = 10

    delivery = refused(post_notification(b'{"operations": [' + b" " * 100), 400, "PARSING_ERROR")

    assert delivery.body == '{"operatio'
    assert delivery.body_truncated


@pytest.mark.parametrize(
    "issuer_id", ["%00%00%00", "ISSUERX00%00", "x" * 300, "%F0%9F%92%B3card"], ids=repr
)
def test_odd_issuer_ids_in_the_path_answer_404(db, post_notification, issuer_id):
    delivery = refused(post_notification(spec.E1, issuer_id=issuer_id), 404, "ISSUER_NOT_FOUND")

    assert "\x00" not in delivery.issuer_id_in_path
    assert len(delivery.issuer_id_in_path) <= 64


@pytest.mark.parametrize(
    "value",
    ["4111111111111111", "a" * 65, "bad id", "x\x00y"],
    ids=["card-number", "long", "space", "nul"],
)
def test_untrustworthy_correlation_ids_are_not_kept(issuer, post_notification, value):
    assert post_notification(spec.E1, HTTP_X_CORRELATION_ID=value).status_code == 204

    assert NotificationDelivery.objects.get().correlation_id == ""


def test_odd_headers_are_stored_cleanly(issuer, post_notification):
    response = post_notification(json.dumps(spec.E1), content_type="text/plain\x00; x=" + "y" * 400)

    delivery = refused(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "\x00" not in delivery.content_type
    assert len(delivery.content_type) <= 255
