"""The state rules: ranks, sticky failures, conflicts, gaps, unknown codes, and arrival order."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking.rules import (
    EventFacts,
    Outcome,
    ReconcileReason,
    derive_order_state,
    needs_reconcile_after,
    reconcile_reason_for,
)

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
STEPS = [
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
]


def item(status: str, *, op_status: str = "PENDING", **details) -> dict:
    return {
        "operationId": "op-1",
        "operation": "PRODUCE",
        "status": op_status,
        "startTime": "2026-03-02T09:00:00Z",
        "cardId": "card-1",
        "details": {"status": status, **details},
    }


def shipped(carrier_status: str, **extra) -> dict:
    return item(
        "CARD_SHIPPED",
        op_status="SUCCESSFUL",
        shipment={"carrier": "ups", "trackingNumber": "1Z1", "status": carrier_status, **extra},
    )


def facts(items: list[dict]) -> list[EventFacts]:
    """Events received one second apart, in the given order."""
    result = []
    for i, payload in enumerate(items):
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        at = T0 + dt.timedelta(seconds=i)
        result.append(EventFacts(i, digest, at, at, payload))
    return result


def test_highest_step_wins_whatever_the_arrival_order():
    state = derive_order_state(facts([item("CARD_PROD_DONE"), item("CARD_PROD_REQUESTED")]))
    assert state.production_status == "CARD_PROD_DONE"
    assert state.outcomes == {0: Outcome.ADVANCED, 1: Outcome.STALE}


@pytest.mark.parametrize("failure", ["DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_CANCELED"])
def test_failures_are_sticky_over_every_normal_step(failure):
    state = derive_order_state(facts([item(failure, op_status="FAILED"), item("CARD_PROD_DONE")]))
    assert state.production_status == failure
    assert state.is_terminal is True
    assert state.has_conflict is False
    assert state.outcomes[1] == Outcome.STALE


def test_failure_together_with_shipped_is_a_conflict_showing_the_failure():
    state = derive_order_state(facts([item("CARD_PROD_CANCELED"), shipped("IN_TRANSIT")]))
    assert state.production_status == "CARD_PROD_CANCELED"
    assert state.has_conflict is True
    assert state.outcomes[1] == Outcome.CONFLICT
    assert state.shipment["status"] == "IN_TRANSIT"  # still shown for staff
    assert reconcile_reason_for(state) == ReconcileReason.CONFLICT


def test_shipped_is_terminal_but_carrier_updates_still_apply():
    state = derive_order_state(facts([shipped("IN_TRANSIT"), shipped("DELIVERED")]))
    assert state.is_terminal is True
    assert state.shipment["status"] == "DELIVERED"
    assert state.shipment_final is True
    assert state.outcomes == {0: Outcome.ADVANCED, 1: Outcome.SHIPMENT_UPDATE}


def test_late_carrier_update_does_not_undo_a_delivery():
    state = derive_order_state(facts([shipped("DELIVERED"), shipped("IN_TRANSIT")]))
    assert state.shipment["status"] == "DELIVERED"
    assert state.outcomes[1] == Outcome.STALE


def test_unknown_code_is_kept_flagged_and_moves_nothing():
    state = derive_order_state(facts([item("CARD_PROD_READY"), item("CARD_PROD_ON_HOLD")]))
    assert state.production_status == "CARD_PROD_READY"
    assert state.unknown_codes == ["CARD_PROD_ON_HOLD"]
    assert state.outcomes[1] == Outcome.UNKNOWN_STATUS
    assert reconcile_reason_for(state) == ReconcileReason.UNKNOWN_STATUS


def test_unknown_carrier_status_is_flagged():
    state = derive_order_state(facts([shipped("HELD_AT_CUSTOMS")]))
    assert state.unknown_codes == ["shipment:HELD_AT_CUSTOMS"]


def test_jump_over_steps_is_a_gap_including_to_shipped():
    state = derive_order_state(facts([item("CARD_PROD_REQUESTED"), item("CARD_PROD_ONGOING")]))
    assert state.missing_steps == ["DATA_PREPARED", "CARD_PROD_READY"]
    state = derive_order_state(facts([item("CARD_PROD_DONE"), shipped("IN_TRANSIT")]))
    assert state.missing_steps == []
    state = derive_order_state(facts([item("CARD_PROD_READY"), shipped("IN_TRANSIT")]))
    assert state.missing_steps == ["CARD_PROD_ONGOING", "CARD_PROD_DONE"]
    assert reconcile_reason_for(state) == ReconcileReason.GAP


def test_conflict_outranks_unknown_outranks_gap():
    state = derive_order_state(
        facts(
            [
                item("CARD_PROD_REQUESTED"),
                item("CARD_PROD_ONGOING"),
                item("MYSTERY"),
                item("DATA_EXCEPTION"),
                shipped("IN_TRANSIT"),
            ]
        )
    )
    assert reconcile_reason_for(state) == ReconcileReason.CONFLICT


def test_reconcile_flag_raised_by_new_problems_and_cleared_when_a_gap_fills():
    gap = derive_order_state(facts([item("CARD_PROD_REQUESTED"), item("CARD_PROD_READY")]))
    assert needs_reconcile_after(before=None, after=gap, needs_reconcile=False) is True
    # Reconciliation cleared it; the same gap seen again does not raise it again.
    assert needs_reconcile_after(before=gap, after=gap, needs_reconcile=False) is False
    filled = derive_order_state(
        facts([item("CARD_PROD_REQUESTED"), item("CARD_PROD_READY"), item("DATA_PREPARED")])
    )
    assert needs_reconcile_after(before=gap, after=filled, needs_reconcile=True) is False


def test_fields_come_from_the_events_that_carry_them():
    state = derive_order_state(
        facts(
            [
                item("DATA_PREPARED", dueDate="2026-03-05", issuerRequestId="req-1"),
                item("CARD_PROD_READY", productionSite="SITE-1"),
                item("CARD_PROD_ONGOING"),
            ]
        )
    )
    assert state.issuer_request_id == "req-1"
    assert state.production_site == "SITE-1"
    assert state.due_date == dt.date(2026, 3, 5)


# ---------------------------------------------------------------------------- property


def lifecycle() -> list[dict]:
    """Every notification one order can get, including a failure, unknown code and carrier data."""
    return [
        *(item(s, issuerRequestId="req-9") for s in STEPS[:2]),
        *(item(s, productionSite="SITE-1") for s in STEPS[2:]),
        item("CARD_PROD_ON_HOLD", reason="stock"),
        shipped("IN_TRANSIT", message="Picked up"),
        shipped("OUT_FOR_DELIVERY"),
        shipped("DELIVERED", message="Delivered"),
        item("CARD_PROD_CANCELED", reason="Pull and change CANCEL accepted"),
        {**item("DATA_EXCEPTION", op_status="FAILED"), "errorCode": "E1", "error": "bad"},
    ]


@settings(max_examples=300, deadline=None)
@given(
    chosen=st.sets(st.integers(min_value=0, max_value=len(lifecycle()) - 1), min_size=1),
    data=st.data(),
)
def test_state_is_the_same_for_any_subset_duplication_and_permutation(chosen, data):
    notifications = [lifecycle()[i] for i in sorted(chosen)]
    copies = data.draw(
        st.lists(st.sampled_from(notifications), min_size=0, max_size=len(notifications))
    )
    arrival = data.draw(st.permutations(notifications + copies))

    # Storage dedups by content; an event is first received when its first copy arrives.
    seen: dict[str, EventFacts] = {}
    for position, payload in enumerate(arrival):
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        at = T0 + dt.timedelta(seconds=position)
        if digest not in seen:
            seen[digest] = EventFacts(digest, digest, at, at, payload)
    shuffled = derive_order_state(list(seen.values()))
    reference = derive_order_state(facts(notifications))

    assert shuffled.content() == reference.content()
    assert shuffled.event_count == len(chosen)
