"""The state rules: D1's times decide the latest event, ranks only move the step forward, sticky
failures, conflicts, gaps, holds and unknown codes, incomplete items; and arrival never counts."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.intake import streams
from tracking.domain.flags import ReconcileReason, needs_reconcile_after, reconcile_reason_for
from tracking.domain.fold import Outcome, derive_order_state
from tracking.domain.ordering import EventFacts

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
    # Same startTime: nothing says the hold came after READY rather than before it.
    assert reconcile_reason_for(state) == ReconcileReason.HOLD_THEN_PROGRESS
    alone = derive_order_state(facts([item("CARD_PROD_ON_HOLD")]))
    assert reconcile_reason_for(alone) == ReconcileReason.UNKNOWN_STATUS


def test_a_carrier_word_never_seen_is_shown_as_sent_and_is_no_exception():
    state = derive_order_state(facts([shipped("Colis en attente de tri")]))
    assert state.unknown_codes == []
    assert state.open_unknown_codes == []
    assert state.shipment["status"] == "Colis en attente de tri"
    assert state.shipment_class == "unknown"
    assert state.shipment_final is False
    assert reconcile_reason_for(state) == ""


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


# ---------------------------------------------------------------------------- D1's times decide

DAY = "2026-03-0{}T10:00:00.000Z"


def timed(status: str, op_status: str, *, end_day: int | None = None, **extra) -> dict:
    """An item of the same operation with an endTime on day `end_day` (none when None)."""
    top = {k: extra.pop(k) for k in ("errorCode", "error") if k in extra}
    payload = {**item(status, op_status=op_status, **extra), **top}
    if end_day is not None:
        payload["endTime"] = DAY.format(end_day)
    return payload


def carrier(status: str, *, end_day: int, message: str = "") -> dict:
    payload = shipped(status, message=message)
    payload["endTime"] = DAY.format(end_day)
    return payload


def both_orders(a: dict, b: dict):
    """The state after `a` then `b`, and after `b` then `a`."""
    return derive_order_state(facts([a, b])), derive_order_state(facts([b, a]))


def test_failed_completion_is_not_undone_by_a_late_pending_copy():
    failed = timed(
        "CARD_PROD_ONGOING", "FAILED", end_day=4, errorCode="E_PERSO", error="Chip broken"
    )
    for state in both_orders(failed, item("CARD_PROD_ONGOING")):
        assert state.operation_status == "FAILED"
        assert (state.error_code, state.error) == ("E_PERSO", "Chip broken")
        assert state.end_time == dt.datetime(2026, 3, 4, 10, tzinfo=dt.UTC)
        assert state.is_terminal is True  # the operation is over, whatever its step


def test_successful_completion_is_not_undone_by_a_late_pending_copy():
    done = timed("CARD_PROD_DONE", "SUCCESSFUL", end_day=4)
    for state in both_orders(done, item("CARD_PROD_DONE")):
        assert state.operation_status == "SUCCESSFUL"
        assert state.end_time is not None


def test_the_later_end_time_gives_the_shipment_whatever_the_carrier_vocabulary():
    held = carrier("HELD_AT_CUSTOMS", end_day=5)
    rerouted = carrier("REROUTED", end_day=6)
    for state in both_orders(held, rerouted):
        assert state.shipment["status"] == "REROUTED"


def test_back_in_transit_after_out_for_delivery_is_the_current_shipment():
    updates = [
        carrier("IN_TRANSIT", end_day=5, message="Departed hub"),
        carrier("OUT_FOR_DELIVERY", end_day=6),
        carrier("IN_TRANSIT", end_day=7, message="Back to depot after a failed attempt"),
    ]
    for arrival in itertools.permutations(updates):
        state = derive_order_state(facts(list(arrival)))
        assert state.shipment["status"] == "IN_TRANSIT"
        assert state.shipment["message"] == "Back to depot after a failed attempt"


def test_a_later_step_does_not_hide_a_failure_reported_with_end_time():
    failed = timed("CARD_PROD_READY", "FAILED", end_day=4, errorCode="E_DATA")
    for state in both_orders(failed, item("DATA_PREPARED")):
        assert state.production_status == "CARD_PROD_READY"
        assert state.operation_status == "FAILED"
        assert state.error_code == "E_DATA"
        assert state.has_conflict is False


@pytest.mark.parametrize("higher", [item("CARD_PROD_DONE"), shipped("IN_TRANSIT")])
def test_failed_completion_with_a_higher_step_is_a_conflict(higher):
    failed = timed("CARD_PROD_ONGOING", "FAILED", end_day=4, errorCode="E_PERSO")
    for state in both_orders(failed, higher):
        assert state.has_conflict is True
        assert reconcile_reason_for(state) == ReconcileReason.CONFLICT


def test_times_tie_then_ranks_then_content_decide():
    # Same times and ranks, different content: the fingerprint decides, not the arrival.
    one = {**timed("CARD_PROD_DONE", "FAILED", end_day=4), "errorCode": "E_A"}
    two = {**timed("CARD_PROD_DONE", "FAILED", end_day=4), "errorCode": "E_B"}
    first, second = both_orders(one, two)
    assert first.error_code == second.error_code
    # With equal times, the more final operation status is the later word.
    pending_shipped = item("CARD_SHIPPED")
    successful = item("CARD_PROD_DONE", op_status="SUCCESSFUL")
    for state in both_orders(pending_shipped, successful):
        assert state.operation_status == "SUCCESSFUL"
        assert state.production_status == "CARD_SHIPPED"


def test_an_item_without_details_counts_and_asks_d1():
    bare = {**timed("X", "FAILED", end_day=4, errorCode="E_DATA", error="Rejected")}
    del bare["details"]
    for state in both_orders(item("CARD_PROD_REQUESTED"), bare):
        assert state.production_status == "CARD_PROD_REQUESTED"
        assert (state.operation_status, state.error_code) == ("FAILED", "E_DATA")
        assert state.unknown_codes == []
        assert state.incomplete_items == 1
        assert reconcile_reason_for(state) == ReconcileReason.INCOMPLETE
        assert needs_reconcile_after(before=None, after=state, needs_reconcile=False) is True
    assert derive_order_state(facts([bare])).outcomes == {0: Outcome.INCOMPLETE}


def test_a_hold_shows_its_code_and_reason_until_the_operation_completes():
    hold = item("CARD_PROD_ON_HOLD", reason="Stock item unavailable")
    held = derive_order_state(facts([item("CARD_PROD_READY"), hold]))
    assert (held.hold_code, held.hold_reason) == ("CARD_PROD_ON_HOLD", "Stock item unavailable")
    assert reconcile_reason_for(held) == ReconcileReason.HOLD_THEN_PROGRESS

    completed = timed("CARD_SHIPPED", "SUCCESSFUL", end_day=6)
    for state in both_orders(hold, completed):
        assert state.unknown_codes == ["CARD_PROD_ON_HOLD"]  # still on the record
        assert state.open_unknown_codes == []
        assert state.hold_code == ""
        assert reconcile_reason_for(state) == ""
    # It stops calling for a reconcile once the completion is known, in either order.
    after = derive_order_state(facts([hold, completed]))
    assert needs_reconcile_after(before=held, after=after, needs_reconcile=True) is False
    assert needs_reconcile_after(before=None, after=after, needs_reconcile=False) is False


def test_a_hold_that_resumes_keeps_asking_until_d1_answers():
    # Same times: nothing says whether the hold came before the resumed step, so D1 is asked.
    state = derive_order_state(facts([item("CARD_PROD_ON_HOLD"), item("CARD_PROD_ONGOING")]))
    assert state.production_status == "CARD_PROD_ONGOING"
    assert state.hold_code == "CARD_PROD_ON_HOLD"
    assert reconcile_reason_for(state) == ReconcileReason.HOLD_THEN_PROGRESS


def test_exception_changes_only_with_new_failures_conflicts_or_unknown_codes():
    failed = timed("CARD_PROD_ONGOING", "FAILED", end_day=4, errorCode="E_PERSO")
    state = derive_order_state(
        facts([item("CARD_PROD_READY"), failed, item("CARD_PROD_READY", x=1)])
    )
    assert state.exception_changed_at == T0 + dt.timedelta(seconds=1)
    state = derive_order_state(facts([failed, {**failed, "errorCode": "E_OTHER"}]))
    assert state.exception_changed_at == T0 + dt.timedelta(seconds=1)


# ---------------------------------------------------------------------------- property


def arrive(payloads: list[dict], *, batches: list[int] | None = None) -> list[EventFacts]:
    """Store `payloads` as the portal would: dedup by content, received in batches in order.

    Items of one batch share a receipt time (one POST); each batch comes a second later.
    """
    seen: dict[str, EventFacts] = {}
    sizes = iter(batches or [1] * len(payloads))
    batch, left = 0, next(sizes, 1)
    for payload in payloads:
        if left == 0:
            batch, left = batch + 1, next(sizes, 1)
        left -= 1
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        at = T0 + dt.timedelta(seconds=batch)
        seen.setdefault(digest, EventFacts(digest, digest, at, at, payload))
    return list(seen.values())


def _distinct(items: list[dict]) -> list[dict]:
    return list({json.dumps(i, sort_keys=True): i for i in items}.values())


@settings(max_examples=400, deadline=None)
@given(items=streams.order_items, data=st.data())
def test_every_permutation_batching_and_duplication_gives_the_same_state(items, data):
    items = _distinct(items)
    copies = data.draw(st.lists(st.sampled_from(items), max_size=len(items)), label="copies")
    arrival = data.draw(st.permutations(items + copies), label="arrival")
    batches = data.draw(
        st.lists(st.integers(1, 3), min_size=len(arrival), max_size=len(arrival)), label="batches"
    )
    reference = derive_order_state(arrive(items))
    shuffled = derive_order_state(arrive(arrival, batches=batches))

    assert shuffled.content() == reference.content()
    assert shuffled.event_count == len(items)


@settings(max_examples=200, deadline=None)
@given(items=streams.order_items, data=st.data())
def test_reversed_arrival_gives_the_same_state(items, data):
    items = _distinct(items)
    forward = derive_order_state(arrive(items))
    backward = derive_order_state(arrive(list(reversed(items))))
    assert forward.content() == backward.content()


def arrival_tie_break(self: EventFacts) -> tuple:
    """A wrong rule, for the mutation check: ties inside the times broken by receipt time."""
    return (*self.time_key(), self.first_received_at, self.fingerprint)


def test_the_property_catches_a_rule_that_breaks_ties_by_arrival(monkeypatch):
    """The mutation check, kept as a test: with arrival breaking ties, some order differs."""
    monkeypatch.setattr(EventFacts, "latest_key", arrival_tie_break)
    with pytest.raises(AssertionError):
        test_every_permutation_batching_and_duplication_gives_the_same_state()


def test_lifecycle_in_any_order_gives_one_state():
    reference = derive_order_state(facts(lifecycle()))
    for seed in range(20):
        shuffled = list(lifecycle())
        random.Random(seed).shuffle(shuffled)
        assert derive_order_state(facts(shuffled)).content() == reference.content()
