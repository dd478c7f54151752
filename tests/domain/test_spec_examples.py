"""SPEC §8's examples E1 to E12 through the real endpoint, checked through the read API."""

from __future__ import annotations

import pytest

from tests.fixtures import spec_examples as spec

pytestmark = pytest.mark.django_db


def test_happy_path_ends_shipped_and_delivered(issuer, post_notification, order_state, api):
    for body in (spec.E1, spec.E2, spec.E3, spec.E4, spec.E5):
        assert post_notification(body).status_code == 204
    order = order_state("card-000123")
    assert order["production_status"] == "CARD_PROD_DONE"
    assert order["operation_status"] == "PENDING"
    assert order["is_terminal"] is False
    assert order["shipment"] is None

    assert post_notification(spec.E6).status_code == 204
    order = order_state("card-000123")
    assert order["production_status"] == "CARD_SHIPPED"
    assert order["operation_status"] == "SUCCESSFUL"
    assert order["is_terminal"] is True
    assert order["end_time"].startswith("2026-03-04T16:40:51.007")
    assert order["shipment"]["status"] == "IN_TRANSIT"

    assert post_notification(spec.E7).status_code == 204
    order = order_state("card-000123")
    assert order["shipment"] == {
        "carrier": "ups",
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
        "status": "DELIVERED",
        "normalized_status": "delivered",
        "message": "Delivered, left at front door",
    }
    assert order["issuer_request_id"] == "req-2026-03-02-0001"
    assert order["production_site"] == "PERSO-SITE-EU-01"
    assert order["due_date"] == "2026-03-05"
    assert order["start_time"].startswith("2026-03-02T09:15:04.120")
    assert order["needs_reconcile"] is False
    assert order["event_count"] == 7

    detail = api.get(f"/api/v1/orders/{order['id']}/").json()
    statuses = [e["production_status"] for e in detail["events"]]
    assert statuses == [
        "CARD_PROD_REQUESTED",
        "DATA_PREPARED",
        "CARD_PROD_READY",
        "CARD_PROD_ONGOING",
        "CARD_PROD_DONE",
        "CARD_SHIPPED",
        "CARD_SHIPPED",
    ]
    assert [e["outcome"] for e in detail["events"]][-1] == "shipment_update"


def test_e8_duplicate_changes_nothing_but_is_counted(issuer, post_notification, order_state, api):
    for body in (spec.E1, spec.E2, spec.E3, spec.E4):
        post_notification(body)
    before = order_state("card-000123")

    response = post_notification(spec.E8)

    assert response.status_code == 204
    after = order_state("card-000123")
    assert after == before
    events = api.get(f"/api/v1/orders/{after['id']}/").json()["events"]
    ongoing = [e for e in events if e["production_status"] == "CARD_PROD_ONGOING"]
    assert len(ongoing) == 1
    assert ongoing[0]["times_received"] == 2


def test_e9_late_lower_step_is_stale_and_does_not_regress(
    issuer, post_notification, order_state, api
):
    post_notification(spec.E9A)
    post_notification(spec.E9B)

    order = order_state("card-000456")
    assert order["production_status"] == "CARD_PROD_DONE"
    events = api.get(f"/api/v1/orders/{order['id']}/").json()["events"]
    assert [(e["production_status"], e["outcome"]) for e in events] == [
        ("CARD_PROD_DONE", "advanced"),
        ("CARD_PROD_ONGOING", "stale"),
    ]


def test_e10_unknown_code_is_kept_flagged_and_then_advances(
    issuer, post_notification, order_state, api
):
    post_notification(spec.E10A)
    order = order_state("card-000789")
    assert order["production_status"] == ""
    assert order["needs_reconcile"] is True
    assert order["reconcile_reason"] == "unknown_status"
    assert order["unknown_codes"] == ["CARD_PROD_ON_HOLD"]

    post_notification(spec.E10B)
    order = order_state("card-000789")
    assert order["production_status"] == "CARD_PROD_ONGOING"
    assert order["production_site"] == "PERSO-SITE-EU-01"
    assert order["needs_reconcile"] is True
    events = api.get(f"/api/v1/orders/{order['id']}/").json()["events"]
    assert [e["outcome"] for e in events] == ["unknown_status", "advanced"]
    assert events[0]["payload"]["details"]["reason"].startswith("Stock item unavailable")


def test_e11_data_exception_is_terminal_with_its_error(issuer, post_notification, order_state):
    post_notification(spec.E11)

    order = order_state("card-000999")
    assert order["production_status"] == "DATA_EXCEPTION"
    assert order["operation_status"] == "FAILED"
    assert order["is_terminal"] is True
    assert order["error_code"] == "DATA_VALIDATION_FAILED"
    assert order["error"] == "Delivery address country not allowed for program"
    assert order["reason"] == "shipment.deliveryAddress.countryCode rejected"
    assert order["issuer_request_id"] == "req-2026-03-03-0042"


def test_e12_bulk_applies_each_card_and_reads_ids_in_both_places(
    issuer, post_notification, order_state
):
    assert post_notification(spec.E12).status_code == 204

    prepared = order_state("card-100001")
    assert prepared["production_status"] == "DATA_PREPARED"
    assert prepared["input_file_name"] == "ORDERS_20260305_01.csv"
    assert prepared["issuer_request_id"] == "row-0001"
    assert prepared["due_date"] == "2026-03-09"
    assert prepared["is_terminal"] is False

    cancelled = order_state("card-100002")
    assert cancelled["production_status"] == "CARD_PROD_CANCELED"
    assert cancelled["is_terminal"] is True
    assert cancelled["reason"] == "Pull and change CANCEL accepted"
    assert cancelled["issuer_request_id"] == "row-0002"


def test_ids_inside_details_only_are_read(issuer, post_notification, order_state):
    item = {**spec.E12["operations"][0]}
    del item["inputFileName"], item["issuerRequestId"]
    post_notification({"operations": [item]})

    order = order_state("card-100001")
    assert order["input_file_name"] == "ORDERS_20260305_01.csv"
    assert order["issuer_request_id"] == "row-0001"


def test_all_examples_in_spec_order(issuer, post_notification, api):
    for body in spec.ALL_IN_ORDER:
        assert post_notification(body).status_code == 204
    orders = {o["card_id"]: o for o in api.get("/api/v1/orders/").json()["results"]}
    assert {card: o["production_status"] for card, o in orders.items()} == {
        "card-000123": "CARD_SHIPPED",
        "card-000456": "CARD_PROD_DONE",
        "card-000789": "CARD_PROD_ONGOING",
        "card-000999": "DATA_EXCEPTION",
        "card-100001": "DATA_PREPARED",
        "card-100002": "CARD_PROD_CANCELED",
    }
