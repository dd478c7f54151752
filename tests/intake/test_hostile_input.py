"""Hostile and broken input: every refusal is a D1-style JSON error, kept for staff, never a 5xx.

The cases here are the ones a database would choke on (NUL, unpaired surrogates, infinity,
times that do not exist in UTC, strings longer than their columns) on top of those of
test_webhook_contract.py.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures import spec_examples as spec
from tests.services.reconcile.items import item
from tracking.domain.validation import item_storable
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


def valid_items(count: int) -> list[dict]:
    return [item(f"card-{n:04d}", "CARD_PROD_REQUESTED") for n in range(count)]


def with_hostile_item(hostile_item: bytes, valid: list[dict]) -> bytes:
    """A body of `valid` items with the raw JSON text of one hostile item in the middle."""
    texts = [json.dumps(i).encode() for i in valid]
    middle = len(texts) // 2
    return (
        b'{"operations": [' + b", ".join([*texts[:middle], hostile_item, *texts[middle:]]) + b"]}"
    )


HOSTILE = item("card-hostile", "CARD_SHIPPED", shipment_status="IN_TRANSIT")
HOSTILE_TEXT = json.dumps(HOSTILE).encode()


def hostile(field: bytes) -> bytes:
    """The hostile item's JSON text with `field` (raw JSON) added as its last field."""
    return HOSTILE_TEXT[:-1] + b", " + field + b"}"


# (the hostile item's raw JSON text, what its reason says, a value of its stored form)
UNSTORABLE = {
    "nul-in-carrier-message": (
        HOSTILE_TEXT.replace(b'"message": "in transit"', b'"message": "in\\u0000transit"'),
        "details.shipment.message holds a NUL character",
        lambda p: p["details"]["shipment"]["message"] == "in\\u0000transit",
    ),
    "raw-nul-byte": (
        hostile(b'"note": "a\x00b"'),
        "note holds a NUL character",
        lambda p: p["note"] == "a\\u0000b",
    ),
    "lone-surrogate": (
        hostile(b'"note": "x\\ud800y"'),
        "note holds an unpaired surrogate",
        lambda p: p["note"] == "x\\ud800y",
    ),
    "not-utf8-byte": (
        hostile(b'"note": "caf\xe9"'),
        "note holds an unpaired surrogate or a byte that is not UTF-8",
        lambda p: p["note"] == "caf\\udce9",
    ),
    "infinity": (
        hostile(b'"amount": 1e999'),
        "amount is a number no column can hold (1e999)",
        lambda p: p["amount"] == "1e999",
    ),
    "nan": (
        hostile(b'"amount": NaN'),
        "amount is a number no column can hold (NaN)",
        lambda p: p["amount"] == "NaN",
    ),
    "5000-digit-number": (
        hostile(b'"amount": 1' + b"0" * 5000),
        "amount is a number no column can hold",
        lambda p: p["amount"] == "1" + "0" * 5000,
    ),
    "nul-in-a-key": (
        hostile(b'"no\\u0000te": 1'),
        "the key no\\u0000te holds a NUL character",
        lambda p: p["no\\u0000te"] == 1,
    ),
    "nested-40-deep": (
        hostile(b'"extra": ' + b'{"a": ' * 40 + b"1" + b"}" * 40),
        "is nested deeper than 32 levels",
        lambda p: isinstance(p["extra"]["a"], dict),
    ),
    "nested-beyond-the-parser": (
        hostile(b'"extra": ' + b"[" * 50_000 + b"]" * 50_000),
        "extra[0][0][0]",
        lambda p: p["extra"][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][
            0
        ][0][0][0][0][0][0][0][0].startswith("[["),
    ),
}


@pytest.mark.parametrize(
    ("hostile_item", "reason", "stored_as"), UNSTORABLE.values(), ids=UNSTORABLE.keys()
)
def test_one_unstorable_value_costs_only_its_own_item(
    issuer, post_notification, hostile_item, reason, stored_as
):
    valid = valid_items(6)

    response = post_notification(with_hostile_item(hostile_item, valid))

    assert response.status_code == 204, response.content
    assert CardOrder.objects.filter(card_id__startswith="card-0").count() == len(valid)
    kept = OperationEvent.objects.get(card_id="card-hostile")
    assert kept.outcome == "invalid"
    assert reason in kept.validation_error
    assert stored_as(kept.payload)
    assert not CardOrder.objects.filter(card_id="card-hostile").exists()
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status_code, delivery.new_count, delivery.rejected_count) == (204, 7, 1)


def test_900_orders_survive_one_carrier_message_with_a_nul(issuer, post_notification):
    hostile_item, _, _ = UNSTORABLE["nul-in-carrier-message"]

    response = post_notification(with_hostile_item(hostile_item, valid_items(900)))

    assert response.status_code == 204, response.content
    assert CardOrder.objects.count() == 900
    assert OperationEvent.objects.filter(outcome="invalid").count() == 1


def test_a_resent_hostile_item_is_a_duplicate_of_its_stored_form(issuer, post_notification):
    hostile_item, _, _ = UNSTORABLE["lone-surrogate"]
    body = with_hostile_item(hostile_item, valid_items(2))

    assert post_notification(body).status_code == 204
    assert post_notification(body).status_code == 204

    assert OperationEvent.objects.get(card_id="card-hostile").times_received == 2


def test_a_body_of_unstorable_items_only_is_refused_and_kept(issuer, post_notification):
    hostile_item, _, _ = UNSTORABLE["infinity"]

    delivery = refused(
        post_notification(b'{"operations": [' + hostile_item + b"]}"), 400, "FIELD_INVALID_VALUE"
    )

    assert "1e999" in delivery.body
    assert OperationEvent.objects.get().outcome == "invalid"


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        (b'{"operations": [' + HOSTILE_TEXT, "PARSING_ERROR"),
        (b"operations=" + HOSTILE_TEXT, "PARSING_ERROR"),
        (b"\xff\xfe{\x00}\x00", "PARSING_ERROR"),
        (b"[" * 50_000 + b"]" * 50_000, "FIELD_INVALID_FORMAT"),
    ],
    ids=["truncated", "form-encoded", "utf-16", "deep-array"],
)
def test_a_body_that_is_not_json_is_refused_and_kept_whole(
    issuer, post_notification, body, error_code
):
    delivery = refused(post_notification(body), 400, error_code)

    assert len(delivery.body) >= len(body)
    assert not delivery.body_truncated
    assert "\x00" not in delivery.body
    assert not OperationEvent.objects.exists()


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


def test_infinity_and_nan_from_another_parser_are_kept_as_text():
    """D1's on-demand answers are parsed by requests, which lets Infinity and NaN through."""
    storable = item_storable({**ITEM, "amount": float("inf"), "ratios": [float("nan"), 0.5]})

    assert storable.value["amount"] == "inf"
    assert storable.value["ratios"] == ["nan", 0.5]
    assert "amount is a number no column can hold" in storable.problem
    assert "ratios[0] is a number no column can hold" in storable.problem
    assert item_storable(ITEM).value is ITEM and not item_storable(ITEM).problem


def test_a_time_before_year_one_in_utc_costs_nothing_on_any_operation(issuer, post_notification):
    # 0001-01-01T00:00+14:00 is year 0 in UTC: no database stores it. A pull & change result
    # carrying it is still kept, and the valid item beside it applies.
    change = {
        "operationId": "op-change-year-one",
        "operation": "UPDATE_ORDER",
        "status": "PENDING",
        "startTime": "0001-01-01T00:00:00+14:00",
        "cardId": "card-year-one",
        "details": {"type": "CANCEL"},
    }
    valid = valid_items(1)

    response = post_notification({"operations": [change, *valid]})

    assert response.status_code == 204, response.content
    assert OperationEvent.objects.filter(operation_id="op-change-year-one").exists()
    assert CardOrder.objects.filter(card_id=valid[0]["cardId"]).exists()
