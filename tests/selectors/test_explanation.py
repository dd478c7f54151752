"""Why this state: each field the order shows, the rule that decided it and the deciding event."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import given, settings

from tests.domain.test_rules import arrive, facts, item, shipped, timed
from tests.intake import streams
from tracking.domain.fold import derive_order_state
from tracking.domain.order_state import Explanation, Rule


def explained(items: list[dict]) -> dict[tuple[str, object], Explanation]:
    """{(field, value): explanation} of the state of `items` (event keys are their positions)."""
    state = derive_order_state(facts(items))
    return {(e.field, e.value): e for e in state.explanation}


def test_highest_step():
    why = explained([item("CARD_PROD_READY"), item("DATA_PREPARED")])
    assert why["production_status", "CARD_PROD_READY"].rule == Rule.HIGHEST_STEP
    assert why["production_status", "CARD_PROD_READY"].event == 0


def test_sticky_failure():
    why = explained([item("DATA_EXCEPTION", op_status="FAILED"), item("CARD_PROD_DONE")])
    assert why["production_status", "DATA_EXCEPTION"] == Explanation(
        "production_status", "DATA_EXCEPTION", Rule.STICKY_FAILURE, 0
    )


def test_no_known_step():
    why = explained([item("CARD_PROD_ON_HOLD")])
    assert why["production_status", ""].rule == Rule.NO_KNOWN_STEP
    assert why["production_status", ""].event is None


def test_latest_completion_decides_status_and_error():
    failed = timed("CARD_PROD_ONGOING", "FAILED", end_day=4, errorCode="E_PERSO", error="Chip")
    why = explained([failed, item("CARD_PROD_ONGOING")])
    for key in [("operation_status", "FAILED"), ("error_code", "E_PERSO"), ("error", "Chip")]:
        assert why[key].rule == Rule.LATEST_COMPLETION
        assert why[key].event == 0


def test_latest_event_without_a_completion():
    why = explained([item("CARD_PROD_REQUESTED"), item("CARD_PROD_READY")])
    assert why["operation_status", "PENDING"].rule == Rule.LATEST_EVENT
    assert why["operation_status", "PENDING"].event == 1  # the higher step breaks the tie


def test_latest_shipment():
    first = {**shipped("IN_TRANSIT"), "endTime": "2026-03-05T10:00:00Z"}
    last = {**shipped("OUT_FOR_DELIVERY"), "endTime": "2026-03-06T10:00:00Z"}
    back = {**shipped("IN_TRANSIT", message="Back to depot"), "endTime": "2026-03-07T10:00:00Z"}
    why = explained([back, first, last])
    assert why["shipment", "IN_TRANSIT"] == Explanation(
        "shipment", "IN_TRANSIT", Rule.LATEST_SHIPMENT, 0
    )


def test_conflict_names_the_event_that_made_it():
    why = explained(
        [item("CARD_PROD_REQUESTED"), item("CARD_PROD_CANCELED"), shipped("IN_TRANSIT")]
    )
    assert why["has_conflict", True] == Explanation("has_conflict", True, Rule.CONFLICT, 2)
    assert why["reconcile_reason", "conflict"].event == 2


def test_unknown_code_open_and_ended():
    hold = item("CARD_PROD_ON_HOLD", reason="Stock")
    why = explained([item("CARD_PROD_READY"), hold])
    assert why["unknown_code", "CARD_PROD_ON_HOLD"].rule == Rule.UNKNOWN_CODE
    assert why["hold_code", "CARD_PROD_ON_HOLD"] == Explanation(
        "hold_code", "CARD_PROD_ON_HOLD", Rule.OPEN_HOLD, 1
    )
    # READY has the hold's very times: the reason names the step tied with the hold.
    assert why["reconcile_reason", "hold_then_progress"].event == 0
    alone = explained([hold])
    assert alone["reconcile_reason", "unknown_status"].event == 0

    ended = explained([hold, timed("CARD_SHIPPED", "SUCCESSFUL", end_day=6)])
    assert ended["unknown_code", "CARD_PROD_ON_HOLD"].rule == Rule.UNKNOWN_CODE_ENDED
    assert ("hold_code", "CARD_PROD_ON_HOLD") not in ended


def test_incomplete_item():
    bare = timed("X", "FAILED", end_day=3, errorCode="E_DATA")
    del bare["details"]
    why = explained([item("CARD_PROD_REQUESTED"), bare])
    assert why["incomplete_item", "FAILED"] == Explanation(
        "incomplete_item", "FAILED", Rule.INCOMPLETE_ITEM, 1
    )
    assert why["reconcile_reason", "incomplete_item"].event == 1


def test_gap_has_no_event():
    why = explained([item("CARD_PROD_REQUESTED"), item("CARD_PROD_READY")])
    assert why["missing_step", "DATA_PREPARED"] == Explanation(
        "missing_step", "DATA_PREPARED", Rule.GAP
    )
    assert why["reconcile_reason", "gap"].event is None


SHOWN = ["production_status", "operation_status", "error_code", "error", "end_time", "reason"]


@settings(max_examples=300, deadline=None)
@given(items=streams.order_items)
def test_every_field_the_order_shows_has_an_explaining_event(items):
    events = arrive(items)
    keys = {e.key for e in events}
    state = derive_order_state(events)
    why = {e.field: e for e in state.explanation}

    for name in SHOWN:
        value = getattr(state, name)
        if value or (name == "production_status" and state.production_rank is not None):
            assert why[name].value == value
            assert why[name].event in keys
    if state.shipment:
        assert why["shipment"].value == state.shipment.get("status", "")
        assert why["shipment"].event in keys
    if state.has_conflict:
        assert why["has_conflict"].event in keys
    if state.hold_code:
        assert why["hold_code"].event in keys
    codes = {e.value for e in state.explanation if e.field == "unknown_code"}
    assert codes == set(state.unknown_codes)
    assert all(e.event in keys for e in state.explanation if e.field == "unknown_code")
    gaps = [e.value for e in state.explanation if e.field == "missing_step"]
    assert gaps == state.missing_steps


@pytest.mark.django_db
def test_the_read_api_and_the_order_page_give_the_explanation(issuer, post_notification, api):
    failed = timed("CARD_PROD_ONGOING", "FAILED", end_day=4, errorCode="E_PERSO", error="Chip")
    post_notification({"operations": [item("CARD_PROD_REQUESTED"), item("CARD_PROD_ONGOING")]})
    post_notification({"operations": [failed]})
    order = api.get("/api/v1/orders/", {"card_id": "card-1"}).json()["results"][0]

    detail = api.get(f"/api/v1/orders/{order['id']}/").json()

    events = {e["payload"].get("status"): e["id"] for e in detail["events"]}
    rows = {row["field"]: row for row in detail["explanation"]}
    assert rows["operation_status"] == {
        "field": "operation_status",
        "value": "FAILED",
        "rule": "latest_completion",
        "event_id": events["FAILED"],
    }
    assert rows["error_code"]["value"] == "E_PERSO"
    assert rows["missing_step"]["event_id"] is None
    user = get_user_model().objects.create_superuser("lead", "lead@example.com", "lead-pw")
    client = Client()
    client.force_login(user)
    page = client.get(f"/admin/tracking/cardorder/{order['id']}/change/").content.decode()
    assert "Why this state" in page
    assert f'href="#event-{events["FAILED"]}"' in page
    assert "the completion with the latest endTime" in page
