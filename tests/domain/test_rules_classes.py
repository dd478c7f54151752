"""The fold with carrier classes, D1's word on holds, status classes and times without a zone."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import random
import zoneinfo

import pytest

from tracking.domain.flags import ReconcileReason, needs_reconcile_after, reconcile_reason_for
from tracking.domain.fold import derive_order_state
from tracking.domain.ordering import EventFacts as Facts

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
START = "2026-03-02T09:00:00.000Z"


def item(status: str, *, op_status: str = "PENDING", start: str = START, **details) -> dict:
    return {
        "operationId": "op-1",
        "operation": "PRODUCE",
        "status": op_status,
        "startTime": start,
        "cardId": "card-1",
        "details": {"status": status, **details},
    }


def carrier(word: str, *, end: str | None = "2026-03-05T10:00:00.000Z", **extra) -> dict:
    """A carrier update of the shipped operation; by default all of them share D1's times."""
    payload = item(
        "CARD_SHIPPED",
        op_status="SUCCESSFUL",
        shipment={"carrier": "dhl-global-mail", "trackingNumber": "GM1", "status": word, **extra},
    )
    if end is not None:
        payload["endTime"] = end
    return payload


def digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def facts(payloads: list[dict], *, start: dt.datetime = T0) -> list[Facts]:
    """Events received one second apart, in the given order."""
    return [
        Facts(i, digest(p), start + dt.timedelta(seconds=i), start + dt.timedelta(seconds=i), p)
        for i, p in enumerate(payloads)
    ]


def every_arrival(payloads: list[dict]):
    for order in itertools.permutations(payloads):
        yield derive_order_state(facts(list(order)))


# ---------------------------------------------------------------------------- carrier ties


@pytest.mark.parametrize(
    ("words", "shown", "klass"),
    [
        (["InTransit", "Delivered"], "Delivered", "delivered"),
        (
            ["InfoReceived", "InTransit", "OutForDelivery", "Delivered_001"],
            "Delivered_001",
            "delivered",
        ),
        (["in_transit", "OUT_FOR_DELIVERY", "AttemptFail"], "AttemptFail", "failed_attempt"),
        (["InTransit", "Exception_011"], "Exception_011", "returned"),
        (["Delivered", "Exception_010"], "Exception_010", "returned"),
        (["In transit", "Colis en attente"], "In transit", "in_transit"),
        (
            ["AvailableForPickup", "OutForDelivery", "InTransit_007"],
            "AvailableForPickup",
            "available_for_pickup",
        ),
    ],
)
def test_tied_carrier_updates_are_ordered_by_class_in_every_arrival_order(words, shown, klass):
    for state in every_arrival([carrier(word) for word in words]):
        assert state.shipment["status"] == shown
        assert state.shipment_class == klass


def test_twenty_cards_sent_in_transit_then_delivered_all_show_delivered():
    for n in range(20):
        tracking = {"trackingNumber": f"GM{n}"}
        states = every_arrival([carrier("InTransit", **tracking), carrier("Delivered", **tracking)])
        assert {s.shipment_class for s in states} == {"delivered"}


def test_a_failed_attempt_is_followed_by_transit_only_with_its_own_later_time():
    attempt = carrier("AttemptFail", end="2026-03-05T10:00:00.000Z")
    again = carrier("InTransit", end="2026-03-05T16:00:00.000Z")
    for state in every_arrival([attempt, again]):
        assert state.shipment_class == "in_transit"
        assert state.shipment_final is False
    same_time = carrier("InTransit", end="2026-03-05T10:00:00.000Z")
    for state in every_arrival([attempt, same_time]):
        assert state.shipment_class == "failed_attempt"


def test_delivered_and_returned_are_final_whatever_comes_later():
    delivered = carrier("Delivered", end="2026-03-05T10:00:00.000Z")
    later_scan = carrier("InTransit", end="2026-03-06T10:00:00.000Z")
    for state in every_arrival([delivered, later_scan]):
        assert (state.shipment_class, state.shipment_final) == ("delivered", True)
    returned = carrier("RETURNED_TO_SENDER", end="2026-03-05T10:00:00.000Z")
    for state in every_arrival([returned, later_scan]):
        assert (state.shipment_class, state.shipment_final) == ("returned", True)


def test_the_carrier_order_holds_for_a_shuffled_mixed_life():
    words = ["Pending", "InfoReceived_001", "InTransit", "IN_TRANSIT", "OutForDelivery_003"]
    payloads = [carrier(w) for w in [*words, "Delivered_003"]]
    rng = random.Random(18)
    for _ in range(50):
        rng.shuffle(payloads)
        state = derive_order_state(facts(payloads))
        assert state.shipment["status"] == "Delivered_003"


# ---------------------------------------------------------------------------- status classes


def test_successful_at_card_prod_done_ends_the_order():
    done = item("CARD_PROD_DONE", op_status="SUCCESSFUL")
    done["endTime"] = "2026-03-03T10:00:00.000Z"
    for state in every_arrival([item("CARD_PROD_ONGOING"), done]):
        assert state.production_status == "CARD_PROD_DONE"
        assert state.operation_status == "SUCCESSFUL"
        assert state.is_terminal is True


def test_failed_at_a_normal_step_is_terminal():
    failed = item("CARD_PROD_READY", op_status="FAILED")
    failed["endTime"] = "2026-03-03T10:00:00.000Z"
    for state in every_arrival([item("DATA_PREPARED"), failed]):
        assert state.is_terminal is True


# ---------------------------------------------------------------------------- holds and D1's word


def test_hold_then_progress_asks_d1_and_an_on_demand_answer_closes_the_hold():
    hold = item("CARD_PROD_ON_HOLD", reason="Stock item unavailable")
    ongoing = item("CARD_PROD_ONGOING")
    for order in ([hold, ongoing], [ongoing, hold]):
        events = facts(order)
        held = derive_order_state(events)
        assert held.hold_code == "CARD_PROD_ON_HOLD"
        assert held.hold_then_progress is True
        assert reconcile_reason_for(held) == ReconcileReason.HOLD_THEN_PROGRESS
        assert needs_reconcile_after(before=None, after=held, needs_reconcile=False) is True

        # D1 answers on demand CARD_PROD_ONGOING: the same item as the stored one.
        answered_at = (T0 + dt.timedelta(minutes=5)).isoformat()
        answer = {"at": answered_at, "fingerprints": [digest(ongoing)]}
        state = derive_order_state(events, d1_answer=answer)
        assert state.hold_code == ""
        assert state.open_unknown_codes == []
        assert state.closed_by_d1 == ["CARD_PROD_ON_HOLD"]
        assert state.unknown_codes == ["CARD_PROD_ON_HOLD"]  # still on the record
        assert state.production_status == "CARD_PROD_ONGOING"
        assert reconcile_reason_for(state) == ""


def test_an_answer_still_on_hold_or_older_than_the_hold_closes_nothing():
    hold = item("CARD_PROD_ON_HOLD")
    events = facts([item("CARD_PROD_READY"), hold])
    still = {"at": (T0 + dt.timedelta(minutes=5)).isoformat(), "fingerprints": [digest(hold)]}
    assert derive_order_state(events, d1_answer=still).hold_code == "CARD_PROD_ON_HOLD"
    before = {"at": T0.isoformat(), "fingerprints": [digest(item("CARD_PROD_READY"))]}
    assert derive_order_state(events, d1_answer=before).hold_code == "CARD_PROD_ON_HOLD"


def test_a_hold_that_comes_after_the_answer_stays_open():
    ready = item("CARD_PROD_READY")
    answer = {"at": (T0 - dt.timedelta(minutes=1)).isoformat(), "fingerprints": [digest(ready)]}
    state = derive_order_state(facts([ready, item("CARD_PROD_ON_HOLD")]), d1_answer=answer)
    assert state.hold_code == "CARD_PROD_ON_HOLD"


def test_the_answer_gives_one_state_in_every_arrival_order():
    payloads = [item("DATA_PREPARED"), item("CARD_PROD_ON_HOLD"), item("CARD_PROD_ONGOING")]
    answer = {
        "at": (T0 + dt.timedelta(minutes=5)).isoformat(),
        "fingerprints": [digest(payloads[2])],
    }
    contents = {
        json.dumps(derive_order_state(facts(list(p)), d1_answer=answer).content(), default=str)
        for p in itertools.permutations(payloads)
    }
    assert len(contents) == 1


# ---------------------------------------------------------------------------- times


def test_a_time_without_a_zone_is_read_in_the_issuers_zone_and_flagged():
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    payload = item("CARD_PROD_REQUESTED", start="2026-03-02T18:00:00")
    state = derive_order_state(facts([payload]), zone=tokyo)
    assert state.start_time == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert state.zone_assumed is True
    utc = derive_order_state(facts([payload]))
    assert utc.start_time == dt.datetime(2026, 3, 2, 18, 0, tzinfo=dt.UTC)
    zoned = derive_order_state(facts([item("CARD_PROD_REQUESTED")]), zone=tokyo)
    assert zoned.start_time == T0
    assert zoned.zone_assumed is False


def test_start_time_comes_from_an_item_with_only_a_hold_code():
    failed = item("CARD_PROD_ON_HOLD", op_status="FAILED", start="2026-03-02T07:30:00+09:00")
    state = derive_order_state(facts([failed]))
    assert state.start_time == dt.datetime(2026, 3, 1, 22, 30, tzinfo=dt.UTC)
    assert state.is_terminal is True


def test_a_failed_completion_carrying_a_hold_code_ends_the_operation_with_nothing_on_hold():
    failed = {
        **item("CARD_PROD_ON_HOLD", op_status="FAILED", reason="Awaiting artwork approval"),
        "endTime": "2026-03-02T09:00:42.000Z",
        "errorCode": "CARD_STOCK_MISSING",
    }
    for order in itertools.permutations([item("CARD_PROD_REQUESTED"), failed]):
        state = derive_order_state(facts(list(order)))
        assert state.is_terminal and state.operation_status == "FAILED"
        assert state.unknown_codes == ["CARD_PROD_ON_HOLD"]  # kept and shown
        assert state.hold_code == "" and state.open_unknown_codes == []  # over, not on hold
        assert reconcile_reason_for(state) != ReconcileReason.UNKNOWN_STATUS
        assert state.start_time is not None
