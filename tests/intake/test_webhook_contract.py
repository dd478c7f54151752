"""Every answer of the webhook contract, each with what was stored."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from tests.fixtures import spec_examples as spec
from tracking.intake.contract import REFUSALS
from tracking.models import CardOrder, Issuer, NotificationDelivery, OperationEvent, RefusalTally

pytestmark = pytest.mark.django_db


def test_accepted_body_answers_204_with_empty_body_after_storing(issuer, post_notification):
    response = post_notification(spec.E12, HTTP_X_CORRELATION_ID="corr-123")

    assert response.status_code == 204
    assert response.content == b""
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status_code, delivery.item_count, delivery.new_count) == (204, 2, 2)
    assert delivery.correlation_id == "corr-123"
    # The D1 message page shows the body as received.
    assert json.loads(delivery.body) == spec.E12
    assert OperationEvent.objects.count() == 2
    assert CardOrder.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        (b'{"operations": [', "PARSING_ERROR"),
        (b"\xff\xfe not utf-8", "PARSING_ERROR"),
        (b'{"operations": [{"cardId": NaN}]}', "FIELD_INVALID_VALUE"),
        (b"[1, 2, 3]", "FIELD_INVALID_FORMAT"),
        (b'{"operation": []}', "FIELD_MISSING"),
        (b'{"operations": {"cardId": "x"}}', "FIELD_INVALID_FORMAT"),
        (b'{"operations": []}', "FIELD_INVALID_VALUE"),
        (b'{"operations": [' + b"[" * 5000 + b"]" * 5000 + b"]}", "FIELD_INVALID_VALUE"),
    ],
)
def test_body_that_can_never_be_valid_answers_400_and_is_kept(
    issuer, post_notification, body, error_code
):
    response = post_notification(body)

    assert response.status_code == 400
    assert response.json()["errorCode"] == error_code
    assert response.json()["error"]
    delivery = NotificationDelivery.objects.get()
    assert delivery.status_code == 400
    assert delivery.error_code == error_code
    assert delivery.body == body.decode("utf-8", errors="backslashreplace")
    # Items that could be read are kept too (invalid), even when none of them is valid.
    assert OperationEvent.objects.exclude(outcome="invalid").count() == 0


def test_invalid_item_does_not_lose_the_valid_ones(issuer, post_notification):
    bad = {**spec.E1["operations"][0], "cardId": "not a valid id!", "startTime": "yesterday"}
    body = {"operations": [spec.E11["operations"][0], bad]}

    response = post_notification(body)

    assert response.status_code == 204
    assert CardOrder.objects.get().card_id == "card-000999"
    invalid = OperationEvent.objects.get(outcome="invalid")
    assert "cardId must match" in invalid.validation_error
    assert "startTime must be an ISO 8601 date-time" in invalid.validation_error
    assert invalid.payload == bad
    assert invalid.order is None
    delivery = NotificationDelivery.objects.get()
    assert (delivery.new_count, delivery.rejected_count) == (2, 1)


def test_body_with_only_invalid_items_answers_400_and_keeps_them(issuer, post_notification):
    item = {**spec.E1["operations"][0]}
    del item["operationId"]

    response = post_notification({"operations": [item, "not an object"]})

    assert response.status_code == 400
    assert response.json()["errorCode"] == "FIELD_INVALID_VALUE"
    assert "operationId is required" in response.json()["error"]
    assert OperationEvent.objects.filter(outcome="invalid").count() == 2
    assert CardOrder.objects.count() == 0
    assert NotificationDelivery.objects.get().status_code == 400


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("operationId", "x" * 65, "operationId"),
        ("cardId", "c" * 49, "cardId"),
        ("cardId", "card/../1", "cardId must match"),
        ("startTime", "2026-02-30T10:00:00Z", "startTime"),
        ("status", 7, "status must be a string"),
        ("details", "CARD_SHIPPED", "details must be an object"),
        ("details", {"status": "CARD_SHIPPED", "shipment": []}, "details.shipment must be"),
        ("details", {"status": "DATA_PREPARED", "dueDate": "soon"}, "details.dueDate"),
    ],
)
def test_item_rules_of_the_spec(issuer, post_notification, field, value, message):
    item = {**spec.E1["operations"][0], field: value}
    response = post_notification({"operations": [item]})

    assert response.status_code == 400
    assert message in OperationEvent.objects.get().validation_error


def test_unknown_issuer_answers_404_and_is_recorded(db, post_notification):
    response = post_notification(spec.E1, issuer_id="NOSUCHISS1")

    assert response.status_code == 404
    assert response.json()["errorCode"] == "ISSUER_NOT_FOUND"
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status_code, delivery.issuer_id_in_path) == (404, "NOSUCHISS1")
    assert json.loads(delivery.body) == spec.E1


def test_inactive_issuer_answers_404(db, post_notification):
    Issuer.objects.create(issuer_id=spec.ISSUER_ID, name="Off", is_active=False)

    assert post_notification(spec.E1).status_code == 404
    assert OperationEvent.objects.count() == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_answer_405_in_d1_shape(issuer, d1_client, method):
    response = d1_client.generic(method, f"/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards")

    assert response.status_code == 405
    assert response.json()["errorCode"] == "METHOD_NOT_ALLOWED"
    assert response["Allow"] == "POST"
    assert not NotificationDelivery.objects.exists()
    assert RefusalTally.objects.get().status_code == 405


def test_non_json_content_type_answers_415(issuer, post_notification):
    response = post_notification(json.dumps(spec.E1), content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"
    assert NotificationDelivery.objects.get().status_code == 415
    assert OperationEvent.objects.count() == 0


def test_json_with_charset_is_accepted(issuer, post_notification):
    response = post_notification(spec.E1, content_type="application/json; charset=utf-8")

    assert response.status_code == 204
    assert NotificationDelivery.objects.get().status_code == 204
    stored = OperationEvent.objects.get()
    assert stored.card_id == spec.E1["operations"][0]["cardId"]


def test_body_over_the_size_cap_answers_413(issuer, post_notification, settings):
    settings.D1_WEBHOOK_MAX_BODY_BYTES = 200

    response = post_notification(spec.E12)

    assert response.status_code == 413
    assert response.json()["errorCode"] == "PAYLOAD_TOO_LARGE"
    delivery = NotificationDelivery.objects.get()
    assert delivery.status_code == 413
    assert delivery.byte_size == len(json.dumps(spec.E12))
    assert OperationEvent.objects.count() == 0


def test_too_many_operations_answers_400(issuer, post_notification, settings):
    settings.D1_WEBHOOK_MAX_OPERATIONS = 1

    response = post_notification(spec.E12)

    assert response.status_code == 400
    assert response.json()["errorCode"] == "TOO_MANY_OPERATIONS"


def test_other_operations_are_stored_on_the_card_timeline(issuer, post_notification, api):
    post_notification(spec.E1)
    update = {
        "operationId": "op-pullchange-0001",
        "operation": "UPDATE_ORDER",
        "status": "SUCCESSFUL",
        "startTime": "2026-03-02T10:00:00Z",
        "cardId": "card-000123",
        "details": {"type": "CANCEL", "result": "REJECTED"},
    }

    assert post_notification({"operations": [update]}).status_code == 204

    assert CardOrder.objects.count() == 1
    order = api.get("/api/v1/orders/", {"card_id": "card-000123"}).json()["results"][0]
    events = api.get(f"/api/v1/orders/{order['id']}/").json()["events"]
    assert [e["operation"] for e in events] == ["PRODUCE", "UPDATE_ORDER"]
    assert events[1]["outcome"] == "not_tracked"


def test_standalone_tracking_is_an_order_with_its_tracking_type(issuer, post_notification, api):
    item = {
        "operationId": "trk-0001",
        "operation": "STANDALONE_TRACKING",
        "status": "SUCCESSFUL",
        "startTime": "2026-03-02T10:00:00Z",
        "cardId": "card-external-1",
        "details": {"status": "CARD_RETURNED", "trackingType": "RETURN"},
    }
    assert post_notification({"operations": [item]}).status_code == 204

    order = api.get("/api/v1/orders/", {"card_id": "card-external-1"}).json()["results"][0]
    assert order["operation"] == "STANDALONE_TRACKING"
    assert order["tracking_type"] == "RETURN"
    assert order["production_status"] == "CARD_RETURNED"
    assert order["is_terminal"] is True


@pytest.mark.parametrize(
    ("key", "send"),
    [
        ("issuer_unknown", {"issuer_id": "NOSUCHISS1"}),
        ("not_json", {"content_type": "text/plain"}),
        ("too_large", {"big": True}),
    ],
)
def test_each_refusal_is_answered_as_the_catalogue_says(
    issuer, post_notification, settings, key, send
):
    refusal = REFUSALS[key]
    settings.D1_WEBHOOK_MAX_BODY_BYTES = 2_000
    body = json.dumps(spec.E1)
    if send.pop("big", False):
        body += " " * 2_000

    response = post_notification(body, **send)

    assert response.status_code == refusal.status
    assert response.json()["errorCode"] == refusal.error_code
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status_code, delivery.error_code) == (refusal.status, refusal.error_code)
    assert delivery.error == response.json()["error"]


def test_a_store_that_fails_answers_503_with_retry_after(issuer, post_notification):
    # A real fault of the database: the deliveries' table is gone (inside the test's transaction).
    table = NotificationDelivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")

    response = post_notification(spec.E1)

    unavailable = REFUSALS["unavailable"]
    assert response.status_code == 503
    assert response.json() == {"errorCode": unavailable.error_code, "error": unavailable.text}
    assert response["Retry-After"] == str(unavailable.retry_after)
