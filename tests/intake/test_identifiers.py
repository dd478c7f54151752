"""Identifiers are identifiers: ids that look like card numbers are kept, found and joined whole;
card numbers in free text are still masked, however they are written."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from tests.conftest import make_staff
from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_client
from tracking.domain.masking import (
    IDENTIFIER_FIELDS,
    free_text_mask,
    luhn_valid,
    mask_item_text_fields,
)
from tracking.models import CardOrder, OperationEvent
from tracking.services import roles

pytestmark = pytest.mark.django_db

# Numeric ids an issuer may choose; each passes the Luhn check, as one random id in ten does.
CARD_ID = "1234567890123452"
REQUEST_ID = "1234567890123452"
FILE_NAME = "CARDS_20260305093015002.csv"
PAN = "4111111111111111"
LIST = "/admin/tracking/cardorder/"


def numeric_item(production_status: str = "CARD_PROD_REQUESTED", **extra) -> dict:
    """A PRODUCE item whose ids all look like card numbers."""
    item = {
        "operationId": "5500000000000004",
        "operation": "PRODUCE",
        "status": "PENDING",
        "startTime": "2026-03-05T09:30:15.002Z",
        "cardId": CARD_ID,
        "issuerRequestId": REQUEST_ID,
        "inputFileName": FILE_NAME,
        "details": {
            "status": production_status,
            "issuerRequestId": REQUEST_ID,
            "inputFileName": FILE_NAME,
        },
    }
    item.update(extra)
    return item


def test_the_example_ids_pass_the_luhn_check():
    assert all(luhn_valid(i) for i in (CARD_ID, "5500000000000004", "20260305093015002"))


# ---------------------------------------------------------------------------- the webhook


def test_a_numeric_card_id_through_the_webhook_is_stored_exactly_and_derived(
    issuer, post_notification, order_state
):
    response = post_notification({"operations": [numeric_item()]})

    assert response.status_code == 204, response.content
    event = OperationEvent.objects.get()
    assert event.outcome == "advanced" and event.validation_error == ""
    assert event.payload == numeric_item()  # every id exactly as sent
    assert (event.card_id, event.operation_id) == (CARD_ID, "5500000000000004")
    state = order_state(CARD_ID)
    assert state["production_status"] == "CARD_PROD_REQUESTED"
    assert state["card_id"] == CARD_ID
    assert state["issuer_request_id"] == REQUEST_ID
    assert state["input_file_name"] == FILE_NAME


def test_free_text_beside_numeric_ids_is_still_masked(issuer, post_notification):
    item = numeric_item(
        "CARD_SHIPPED",
        error=f"card {PAN} refused",
        endTime="2026-03-06T10:00:00.000Z",
        status="SUCCESSFUL",
    )
    item["details"]["reason"] = "PAN 4111 - 1111 - 1111 - 1111 seen"
    item["details"]["shipment"] = {
        "carrier": "ups",
        "trackingNumber": "400000000000002",  # a carrier reference that passes Luhn
        "status": "InTransit",
        "message": "left at 4111_1111_1111_1111's door on 2026-03-06 10:00",
    }
    item["note"] = "4111\u20141111\u20141111\u20141111"  # a field the portal does not know

    assert post_notification({"operations": [item]}).status_code == 204

    stored = OperationEvent.objects.get().payload
    assert stored["error"] == "card ************1111 refused"
    assert stored["details"]["reason"] == "PAN ************1111 seen"
    shipment = stored["details"]["shipment"]
    assert shipment["message"] == "left at ************1111's door on 2026-03-06 10:00"
    assert shipment["trackingNumber"] == "400000000000002"
    assert stored["note"] == "************1111"
    assert (stored["cardId"], stored["issuerRequestId"]) == (CARD_ID, REQUEST_ID)
    assert stored["details"]["inputFileName"] == FILE_NAME


@pytest.mark.parametrize(
    "written",
    [
        "4111_1111_1111_1111",
        "4111,1111,1111,1111",
        "4111 - 1111 - 1111 - 1111",
        "4111(1111)1111(1111)",
        "4111\u20141111\u20141111\u20141111",  # em dash
        "4111\u20131111\u20131111\u20131111",  # en dash
        "4111 \u2014 1111 \u2014 1111 \u2014 1111",
        "4111 1111-1111.1111",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    ],
)
def test_free_text_masks_card_numbers_with_any_separator(written):
    masked = free_text_mask(f"customer said {written} on the phone")
    assert masked.startswith("customer said ************1111")
    assert masked.endswith(" on the phone")
    assert not luhn_valid("".join(c for c in masked if c.isdigit()) or "1")


@pytest.mark.parametrize(
    "text",
    [
        "Delivered 2026-03-05 10:30:15 at the front door",
        "Arrived 05/03/2026 10:30, next attempt 06/03/2026 09:00",
        "USPS 9400 1000 0000 0000 0000 00 delivered",
    ],
)
def test_free_text_keeps_dates_times_and_tracking_numbers(text):
    assert free_text_mask(text) == text


def test_every_identifier_field_is_kept_and_every_other_field_is_text():
    item = {path.split(".")[-1]: PAN for path in IDENTIFIER_FIELDS if "." not in path}
    item["details"] = {"issuerRequestId": PAN, "inputFileName": PAN, "reason": PAN}
    item["details"]["shipment"] = {"trackingNumber": PAN, "message": PAN}
    item["error"] = PAN
    item["somethingNew"] = {"cardId": PAN}  # an id's name elsewhere is not an identifier

    masked = mask_item_text_fields(item)

    assert masked["cardId"] == masked["operationId"] == PAN
    assert masked["issuerRequestId"] == masked["inputFileName"] == PAN
    assert masked["details"]["issuerRequestId"] == masked["details"]["inputFileName"] == PAN
    assert masked["details"]["shipment"]["trackingNumber"] == PAN
    hidden = "************1111"
    assert masked["details"]["reason"] == masked["error"] == hidden
    assert masked["details"]["shipment"]["message"] == hidden
    assert masked["somethingNew"] == {"cardId": hidden}


# ---------------------------------------------------------------------------- finding them


def test_admin_search_finds_numeric_ids_by_their_exact_value(issuer, post_notification):
    post_notification({"operations": [numeric_item()]})
    order = CardOrder.objects.get()
    client = Client()
    client.force_login(make_staff("searcher", roles.OPERATORS))

    for term in (CARD_ID, "5500000000000004", REQUEST_ID):
        response = client.get(LIST, {"q": term})
        assert response.status_code == 302, term
        assert response["Location"] == f"{LIST}{order.pk}/change/"
    listed = client.get(LIST, {"q": FILE_NAME})
    assert listed.status_code == 200
    assert f'href="{LIST}{order.pk}/change/' in listed.content.decode()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("card_id", CARD_ID),
        ("operation_id", "5500000000000004"),
        ("issuer_request_id", REQUEST_ID),
        ("input_file_name", FILE_NAME),
    ],
)
def test_the_read_api_filters_by_numeric_ids(issuer, post_notification, staff_user, name, value):
    post_notification({"operations": [numeric_item()]})
    other = {**spec.E1["operations"][0]}
    post_notification({"operations": [other]})

    response = read_api_client(staff_user).get("/api/v1/orders/", {name: value})

    assert response.status_code == 200, response.content
    assert [o["card_id"] for o in response.json()["results"]] == [CARD_ID]


# ---------------------------------------------------------------------------- registration


def test_a_numeric_card_registered_through_the_api_is_joined_by_the_webhook(
    issuer, post_notification, staff_user
):
    client = read_api_client(staff_user)
    answer = client.post(
        "/api/v1/orders/",
        {
            "issuer_id": spec.ISSUER_ID,
            "card_id": CARD_ID,
            "issuer_request_id": REQUEST_ID,
            "input_file_name": FILE_NAME,
        },
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["card_id"] == CARD_ID

    assert post_notification({"operations": [numeric_item("DATA_PREPARED")]}).status_code == 204

    order = CardOrder.objects.get()
    assert order.pk == answer.json()["id"]
    assert (order.card_id, order.operation_id) == (CARD_ID, "5500000000000004")
    assert (order.issuer_request_id, order.input_file_name) == (REQUEST_ID, FILE_NAME)
    assert order.production_status == "DATA_PREPARED" and order.registered_at is not None


def test_a_numeric_card_registered_from_a_csv_upload_is_kept_whole(issuer, post_notification):
    client = Client()
    client.force_login(make_staff("uploader", roles.OPERATORS))
    content = (
        "card_id,issuer_id,issuer_request_id,input_file_name\n"
        f"{CARD_ID},{spec.ISSUER_ID},{REQUEST_ID},{FILE_NAME}\n"
    ).encode()
    upload = io.BytesIO(content)
    upload.name = FILE_NAME

    preview = client.post(f"{LIST}register/", {"file": upload})
    assert preview.status_code == 200
    assert CARD_ID in preview.content.decode()
    token = preview.context["token"]
    confirmed = client.post(f"{LIST}register/", {"confirm": "1", "token": token})
    assert confirmed.status_code == 302

    order = CardOrder.objects.get()
    assert (order.card_id, order.issuer_request_id, order.input_file_name) == (
        CARD_ID,
        REQUEST_ID,
        FILE_NAME,
    )
    post_notification({"operations": [numeric_item()]})
    joined = CardOrder.objects.get()
    assert (joined.pk, joined.operation_id) == (order.pk, "5500000000000004")


# ---------------------------------------------------------------------------- ids masked before


def test_rederive_dry_run_counts_ids_an_older_release_masked(issuer, post_notification):
    # What the portal stored before identifiers were told apart from text: a masked cardId
    # made the item invalid; masked correlation ids and file names went into the order.
    whole = numeric_item()
    masked_card = {**numeric_item(), "cardId": "************3452", "operationId": "op-old-1"}
    masked_ids = {
        **spec.E1["operations"][0],
        "operationId": "op-old-2",
        "issuerRequestId": "************3452",
        "inputFileName": "CARDS_*************5002.csv",
    }
    body = {"operations": [whole, masked_card, masked_ids]}
    assert post_notification(body).status_code == 204

    out = io.StringIO()
    call_command("rederive", "--dry-run", stdout=out, stderr=io.StringIO())

    assert "Ids masked by an older release (cannot be restored): 1 order, 2 events." in (
        out.getvalue()
    )


def test_audit_details_keep_identifiers_and_mask_text():
    from tracking.domain.masking import pan_mask_value

    details = {
        "card_id": CARD_ID,
        "cards": [CARD_ID, "card-2"],
        "file": FILE_NAME,
        "note": f"customer read out {PAN}",
        "rows": [{"issuer_request_id": REQUEST_ID, "reason": f"PAN {PAN}"}],
    }

    masked = pan_mask_value(details)

    assert masked["card_id"] == CARD_ID and masked["cards"] == [CARD_ID, "card-2"]
    assert masked["file"] == FILE_NAME
    assert masked["note"] == "customer read out ************1111"
    assert masked["rows"] == [{"issuer_request_id": REQUEST_ID, "reason": "PAN ************1111"}]


def test_log_lines_mask_card_numbers_written_with_any_separator():
    from tracking.observability.logs import _card_numbers_masked

    line = {"event": "card 4111_1111_1111_1111 or 4111 - 1111 - 1111 - 1111 at 2026-03-05"}

    masked = _card_numbers_masked(None, "info", line)["event"]

    assert masked == "card ************1111 or ************1111 at 2026-03-05"
