"""Data care: no full card number is stored anywhere, and logs carry ids and codes, not payloads."""

from __future__ import annotations

import json
import logging
import re

import pytest
from django.apps import apps
from django.db import models

from tests.fixtures import spec_examples as spec
from tracking.domain.masking import free_text_mask, luhn_valid, pan_mask_item, pan_mask_text
from tracking.models import NotificationDelivery, OperationEvent

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"  # a test card number (passes Luhn)
DIGIT_RUNS = re.compile(r"\d(?:[ ./-]?\d){12,18}")


def stored_card_numbers() -> list[tuple[str, str]]:
    """Every Luhn-valid 13-19 digit run in any text or JSON column of the portal's tables."""
    found = []
    for model in apps.get_app_config("tracking").get_models():
        columns = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, (models.CharField, models.TextField, models.JSONField))
        ]
        for row in model._default_manager.values(*columns):
            for column, value in row.items():
                text = value if isinstance(value, str) else json.dumps(value)
                for run in DIGIT_RUNS.findall(text or ""):
                    digits = re.sub(r"\D", "", run)
                    if 13 <= len(digits) <= 19 and luhn_valid(digits):
                        found.append((f"{model.__name__}.{column}", run))
    return found


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (PAN, "************1111"),
        ("card 4111 1111 1111 1111 please", "card ************1111 please"),
        ("5500-0000-0000-0004", "************0004"),
        ("4111111111111112", "4111111111111112"),  # fails Luhn: not a card number
        ("12345678901234567890123", "12345678901234567890123"),  # too long to be one
        ("2026-03-02T09:15:04.120Z", "2026-03-02T09:15:04.120Z"),
    ],
)
def test_card_numbers_are_masked_to_their_last_four_digits(text, masked):
    assert pan_mask_text(text) == masked


def test_masking_keeps_the_rest_of_the_item_exactly():
    item = {
        **spec.E6["operations"][0],
        "error": f"card {PAN} rejected",
        "extra": {PAN: [int(PAN), "ok"]},
    }

    masked = pan_mask_item(item)

    assert masked["error"] == "card ************1111 rejected"
    assert masked["extra"] == {"************1111": ["************1111", "ok"]}
    rest = {k: v for k, v in masked.items() if k not in ("error", "extra")}
    assert rest == {k: v for k, v in item.items() if k not in ("error", "extra")}
    assert pan_mask_item(spec.E6["operations"][0]) is spec.E6["operations"][0]


def test_no_card_number_is_stored_from_webhooks_and_a_numeric_card_id_is_kept(
    issuer, post_notification
):
    numeric_card_id = "1234567890123452"  # the issuer's id for the card; it passes Luhn
    with_pan = {
        **spec.E11["operations"][0],
        "error": f"PAN {PAN} not allowed",
        "details": {"status": "DATA_EXCEPTION", "reason": "card 5500 0000 0000 0004"},
    }
    numeric_id = {**spec.E1["operations"][0], "cardId": numeric_card_id}
    assert post_notification({"operations": [with_pan, numeric_id]}).status_code == 204
    assert post_notification(b'{"operations": [{"cardId": "' + PAN.encode()).status_code == 400
    post_notification(spec.E1, HTTP_X_CORRELATION_ID=PAN)

    # The one Luhn-valid run kept is the identifier, where identifiers are stored.
    kept = {(where, run) for where, run in stored_card_numbers()}
    assert {run for _, run in kept} <= {numeric_card_id}
    assert {where for where, _ in kept} <= {
        "CardOrder.card_id",
        "OperationEvent.card_id",
        "OperationEvent.payload",
        "NotificationDelivery.body",  # the accepted body, written from the stored items
        "OutboundEvent.payload",  # the order's card_id, as the read API shows it
    }
    assert not NotificationDelivery.objects.filter(
        status_code=400, body__contains=numeric_card_id
    ).exists()
    event = OperationEvent.objects.get(card_id=numeric_card_id)
    assert (event.outcome, event.payload["cardId"]) == ("advanced", numeric_card_id)
    masked = OperationEvent.objects.get(operation_id=with_pan["operationId"]).payload
    assert masked["error"] == "PAN ************1111 not allowed"
    assert masked["details"]["reason"] == "card ************0004"
    assert "************1111" in NotificationDelivery.objects.get(status_code=400).body


def test_carrier_references_that_look_like_card_numbers_are_kept(issuer, post_notification):
    fedex_like = "400000000000002"  # 15 digits, passes Luhn
    item = {
        **spec.E6["operations"][0],
        "details": {
            "status": "CARD_SHIPPED",
            "shipment": {
                "carrier": "fedex",
                "trackingNumber": fedex_like,
                "trackingUrl": f"https://www.fedex.com/fedextrack/?trknbr={fedex_like}",
            },
        },
    }

    assert post_notification({"operations": [item]}).status_code == 204

    shipment = OperationEvent.objects.get().payload["details"]["shipment"]
    assert shipment["trackingNumber"] == fedex_like


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


def test_logs_carry_ids_and_codes_never_payloads(issuer, post_notification):
    secret_text = "Delivery-address-17-Rue-Example"
    item = {**spec.E11["operations"][0], "error": secret_text}
    bad = {**item, "cardId": "bad id"}
    recorder, root = Recorder(), logging.getLogger()
    root.addHandler(recorder)
    level, root.level = root.level, logging.DEBUG
    try:
        post_notification({"operations": [item]}, HTTP_X_CORRELATION_ID="corr-log-1")
        post_notification({"operations": [bad]})
        post_notification(b"not json " + secret_text.encode())
    finally:
        root.removeHandler(recorder)
        root.level = level

    messages = "\n".join(recorder.messages)
    assert "corr-log-1" in messages
    assert "ISSUERX001" in messages
    assert secret_text not in messages


@pytest.mark.parametrize(
    ("raw_value", "stored"),
    [
        (b"4111111111111111.0", "************1111"),
        (b"4.111111111111111e15", "************1111"),
        (b'"4111111111111111.0"', "************1111.0"),
        (b'"4111.1111.1111.1111"', "************1111"),
        (b'"4111/1111/1111/1111"', "************1111"),
        (b'"\\uff14\\uff11\\uff11\\uff11' + b"\\uff11" * 12 + b'"', "************1111"),
    ],
    ids=["float", "exponent", "float-text", "dotted", "slashes", "full-width"],
)
def test_card_numbers_are_masked_in_every_form_the_luhn_check_sees(
    issuer, post_notification, raw_value, stored
):
    item = json.dumps({**spec.E1["operations"][0], "reference": "placeholder"}).encode()

    response = post_notification(
        b'{"operations": [' + item.replace(b'"placeholder"', raw_value) + b"]}"
    )

    assert response.status_code == 204, response.content
    assert OperationEvent.objects.get().payload["reference"] == stored
    assert stored_card_numbers() == []


@pytest.mark.parametrize(
    ("note", "masked"),
    [
        ("card 4111 1111-1111.1111 reported lost", "card ************1111 reported lost"),
        ("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "************1111"),
        ("PAN: 4111111111111111.0", "PAN: ************1111.0"),
        ("two: 4111111111111111 5500000000000004", "two: ************1111 ************0004"),
        ("\uff14\uff11\uff11\uff11" + "\uff11" * 12, "************1111"),
    ],
)
def test_free_text_notes_have_card_numbers_masked_however_written(note, masked):
    assert free_text_mask(note) == masked


@pytest.mark.parametrize(
    "note",
    [
        "shipped 2026-03-02 09:15, tracking 1Z999AA10123456784",
        "USPS 9400 1000 0000 0000 0000 00 delivered",  # 22 digits: a tracking number
        "call +33 6 12 34 56 78",
        "4111111111111112 fails the Luhn check",
    ],
)
def test_free_text_notes_keep_what_is_not_a_card_number(note):
    assert free_text_mask(note) == note
