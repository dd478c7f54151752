"""Simulated orders follow SPEC §3: the steps, their fields, their times, and each variation."""

from __future__ import annotations

import itertools
import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pytest

from d1sandbox.lifecycle import KNOWN_DETAILS_STATUSES
from d1sandbox.paths import CHANGE_TYPES, ON_HOLD_STATUS, REATTEMPT_MESSAGE, OrderRates
from d1sandbox.planner import (
    DeliveryPlanner,
    DeliveryRates,
    Happened,
    OrderPlaced,
    SimulatedClock,
)
from d1sandbox.vocabulary import (
    CARRIER_CODES,
    DELIVERED,
    FAILED_ATTEMPT,
    IN_TRANSIT,
    INFO_RECEIVED,
    OUT_FOR_DELIVERY,
    carrier_word_class,
)

CARD_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
OPERATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PRODUCTION_ORDER = [
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
    "CARD_SHIPPED",
]
NORMAL_STEPS = set(PRODUCTION_ORDER[1:5])
NO_VARIATION = {name.name: 0.0 for name in fields(OrderRates)}


@dataclass
class Operation:
    """One operation as the planner emitted it: its items and when each happened."""

    placed: OrderPlaced | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    moments: list[datetime] = field(default_factory=list)
    dropped: list[bool] = field(default_factory=list)

    @property
    def statuses(self) -> list[str | None]:
        return [(item.get("details") or {}).get("status") for item in self.items]


def _operations(*, orders: int = 400, seed: int = 3, **rates: float) -> dict[str, Operation]:
    planner = DeliveryPlanner(
        issuer_ids=["ISSUERX001", "ISSUERX002"],
        orders=orders,
        seed=seed,
        run_number=1,
        order_rates=OrderRates(**rates) if rates else OrderRates(0.1, 0.1, 0.1, 0.1),
        delivery=DeliveryRates(),
        clock=SimulatedClock(epoch=datetime(2026, 11, 27, tzinfo=UTC)),
    )
    operations: dict[str, Operation] = defaultdict(Operation)
    for event in planner.events():
        if isinstance(event, OrderPlaced):
            operations[event.operation_id].placed = event
        elif isinstance(event, Happened):
            operation = operations[event.key.operation_id]
            operation.items.append(event.item)
            operation.moments.append(event.at)
            operation.dropped.append(event.dropped)
    return operations


def _carrier_class(item: dict[str, Any]) -> str:
    return carrier_word_class(item["details"]["shipment"]["status"])


def _only(name: str, rate: float = 1.0, **others: float) -> dict[str, float]:
    return {**NO_VARIATION, name: rate, **others}


def _produce(operations: dict[str, Operation]) -> list[Operation]:
    return [op for op in operations.values() if op.items[0]["operation"] == "PRODUCE"]


def test_every_order_follows_its_lifecycle() -> None:
    operations = _operations()
    seen_paths: set[str] = set()

    for operation_id, operation in operations.items():
        items = operation.items
        assert CARD_ID.match(items[0]["cardId"])
        assert OPERATION_ID.match(operation_id)
        assert {item["operationId"] for item in items} == {operation_id}
        assert len({item["startTime"] for item in items}) == 1
        assert operation.moments == sorted(operation.moments), "steps happen in order"
        statuses = operation.statuses
        if items[0]["operation"] == "STANDALONE_TRACKING":
            assert {item["details"]["trackingType"] for item in items} <= {
                "PRODUCTION",
                "SHIPMENT",
                "RETURN",
            }
            seen_paths.add("standalone")
            continue
        assert statuses[0] == "CARD_PROD_REQUESTED"
        known = [status for status in statuses if status != ON_HOLD_STATUS]
        if ON_HOLD_STATUS in statuses:
            seen_paths.add("on-hold")
            position = statuses.index(ON_HOLD_STATUS)
            assert statuses[position + 1] in PRODUCTION_ORDER, "a hold is followed by a normal step"
            assert items[position]["details"]["reason"]
        assert set(known) <= KNOWN_DETAILS_STATUSES
        if known[-1] == "DATA_EXCEPTION":
            seen_paths.add("exception")
            failed = items[-1]
            assert known == ["CARD_PROD_REQUESTED", "DATA_EXCEPTION"]
            assert failed["status"] == "FAILED"
            assert failed["errorCode"] and failed["error"] and failed["details"]["reason"]
            assert "endTime" in failed
        elif known[-1] == "CARD_PROD_CANCELED":
            seen_paths.add("canceled")
            assert known[:-1] == PRODUCTION_ORDER[: len(known) - 1]
            assert items[-1]["details"]["reason"] == "Pull and change CANCEL accepted"
        else:
            seen_paths.add("shipped")
            shipped = [item for item in items if item["details"]["status"] == "CARD_SHIPPED"]
            assert known[: len(PRODUCTION_ORDER)] == PRODUCTION_ORDER
            assert 2 <= len(shipped) <= 4
            classes = [_carrier_class(item) for item in shipped]
            assert classes[0] in {INFO_RECEIVED, IN_TRANSIT}
            assert classes[-1] == DELIVERED
            assert len({item["endTime"] for item in shipped}) == 1, "carrier updates tie on times"
            for item in shipped:
                assert item["status"] == "SUCCESSFUL"
                shipment = item["details"]["shipment"]
                assert shipment["carrier"] in CARRIER_CODES
                assert set(shipment) == {
                    "carrier",
                    "trackingNumber",
                    "trackingUrl",
                    "status",
                    "message",
                }
            prepared = items[statuses.index("DATA_PREPARED")]
            assert re.match(r"^\d{4}-\d{2}-\d{2}$", prepared["details"]["dueDate"])
            ready = items[statuses.index("CARD_PROD_READY")]
            assert ready["details"]["productionSite"].startswith("PERSO-SITE-")

    assert seen_paths == {"standalone", "on-hold", "exception", "canceled", "shipped"}


def test_request_ids_appear_at_top_level_and_inside_details() -> None:
    items = [item for op in _operations().values() for item in op.items]

    assert any("issuerRequestId" in item for item in items)
    assert any("inputFileName" in item["details"] for item in items)
    assert any("inputFileName" in item and "inputFileName" in item["details"] for item in items)
    files = {
        item["details"]["inputFileName"] for item in items if "inputFileName" in item["details"]
    }
    assert 1 < len(files) <= 4, "file orders share a few files, so a file has many orders"


def test_ids_are_unique_per_order() -> None:
    operations = _operations(orders=300)

    assert len(operations) == 300
    assert len({op.items[0]["cardId"] for op in operations.values()}) == 300


def test_with_no_variation_every_order_is_the_happy_path() -> None:
    operations = _operations(orders=50, **NO_VARIATION)

    for operation in operations.values():
        assert operation.statuses[:6] == PRODUCTION_ORDER
        assert set(operation.statuses[6:]) == {"CARD_SHIPPED"}
        assert not any(operation.dropped)


def test_failed_at_a_normal_step() -> None:
    for operation in _produce(_operations(orders=60, **_only("failed_step_rate"))):
        failed, before = operation.items[-1], operation.items[-2]
        assert failed["status"] == "FAILED"
        assert failed["errorCode"] and failed["error"] and failed["endTime"]
        assert failed["details"]["status"] in NORMAL_STEPS
        # The step it failed at was announced PENDING first: that is the copy sent late.
        assert before["status"] == "PENDING"
        assert before["details"]["status"] == failed["details"]["status"]


def test_results_without_details() -> None:
    for operation in _produce(_operations(orders=60, **_only("no_details_rate"))):
        failed = operation.items[-1]
        assert "details" not in failed
        assert failed["status"] == "FAILED"
        assert failed["errorCode"] and failed["error"] and failed["endTime"]
        assert failed["cardId"] and failed["operationId"]


def test_card_prod_exception() -> None:
    for operation in _produce(_operations(orders=60, **_only("prod_exception_rate"))):
        failed = operation.items[-1]
        assert failed["details"]["status"] == "CARD_PROD_EXCEPTION"
        assert failed["status"] == "FAILED" and failed["endTime"] and failed["errorCode"]
        assert operation.statuses[-2] in {"CARD_PROD_READY", "CARD_PROD_ONGOING"}


def test_completion_at_card_prod_done() -> None:
    for operation in _produce(_operations(orders=40, **_only("no_shipment_rate"))):
        assert operation.statuses == [*PRODUCTION_ORDER[:5], "CARD_PROD_DONE"]
        assert operation.items[-1]["status"] == "SUCCESSFUL" and operation.items[-1]["endTime"]


def test_holds_that_end_in_the_completion() -> None:
    operations = _produce(_operations(orders=60, **_only("hold_completion_rate")))

    for operation in operations:
        position = operation.statuses.index(ON_HOLD_STATUS)
        after = operation.items[position + 1]
        assert after["status"] in {"SUCCESSFUL", "FAILED"} and after["endTime"]
        assert "endTime" not in operation.items[position]


def test_holds_that_resume() -> None:
    for operation in _produce(_operations(orders=60, **_only("unknown_rate"))):
        position = operation.statuses.index(ON_HOLD_STATUS)
        after = operation.items[position + 1]
        assert after["status"] == "PENDING" and after["details"]["status"] in NORMAL_STEPS


def test_carrier_reattempts_tie_on_times_and_follow_the_shipments_life() -> None:
    for operation in _produce(_operations(orders=40, **_only("reattempt_rate"))):
        shipped = [item for item in operation.items if item["details"]["status"] == "CARD_SHIPPED"]
        classes = [_carrier_class(item) for item in shipped]
        if classes[0] == INFO_RECEIVED:
            shipped, classes = shipped[1:], classes[1:]
        assert classes == [
            IN_TRANSIT,
            OUT_FOR_DELIVERY,
            FAILED_ATTEMPT,
            IN_TRANSIT,
            OUT_FOR_DELIVERY,
            DELIVERED,
        ]
        assert shipped[3]["details"]["shipment"]["message"] == REATTEMPT_MESSAGE
        # D1's times tie; every update is distinct all the same (the second round says so).
        assert len({(item["startTime"], item["endTime"]) for item in shipped}) == 1
        assert len({json.dumps(item, sort_keys=True) for item in shipped}) == len(shipped)


def test_pull_and_change_results() -> None:
    operations = _operations(orders=120, **_only("update_order_rate"))
    changes = [op for op in operations.values() if op.items[0]["operation"] == "UPDATE_ORDER"]
    produce_by_card = {op.items[0]["cardId"]: op for op in _produce(operations)}

    assert len(changes) == len(produce_by_card)
    outcomes = set()
    for change in changes:
        (item,) = change.items
        produce = produce_by_card[item["cardId"]]
        assert item["operationId"] != produce.items[0]["operationId"]
        assert item["details"]["type"] in CHANGE_TYPES
        assert item["status"] in {"SUCCESSFUL", "FAILED"} and item["endTime"]
        # Only before shipment (SPEC §3): nothing of the order had shipped yet.
        shipped_before = [
            moment
            for moment, status in zip(produce.moments, produce.statuses, strict=True)
            if status == "CARD_SHIPPED" and moment < change.moments[0]
        ]
        assert not shipped_before
        accepted_cancel = item["details"]["type"] == "CANCEL" and item["status"] == "SUCCESSFUL"
        outcomes.add((item["details"]["type"] == "CANCEL", item["status"]))
        if accepted_cancel:
            assert produce.statuses[-1] == "CARD_PROD_CANCELED"
            assert produce.moments[-1] >= change.moments[0]
        else:
            assert produce.statuses[-1] != "CARD_PROD_CANCELED"
    assert (True, "SUCCESSFUL") in outcomes and (False, "FAILED") in outcomes


def test_a_card_ordered_again_gets_a_second_operation_after_the_first() -> None:
    operations = _operations(orders=40, **_only("reissue_rate"))
    by_card: dict[str, list[Operation]] = defaultdict(list)
    for operation in _produce(operations):
        by_card[operation.items[0]["cardId"]].append(operation)

    assert len(by_card) == 40
    for first, second in by_card.values():
        assert second.moments[0] > first.moments[-1]
        assert second.items[0]["startTime"] > first.items[0]["startTime"]
        assert second.placed is not None and second.placed.registration is not None
        assert second.placed.registration["operation_id"] == second.items[0]["operationId"]


def test_silent_orders_have_every_notification_dropped() -> None:
    operations = _produce(_operations(orders=100, **_only("silent_rate", 0.3)))
    silent = [op for op in operations if op.placed is not None and op.placed.silent]

    assert 15 < len(silent) < 45
    for operation in operations:
        assert all(operation.dropped) == operation.placed.silent
        assert any(operation.dropped) == operation.placed.silent


def test_registration_knows_what_the_issuer_knows() -> None:
    operations = _produce(_operations(orders=200))
    bodies = [op.placed.registration for op in operations if op.placed is not None]

    assert len(bodies) == len(operations)
    by_file = [body for body in bodies if "input_file_name" in body]
    by_api = [body for body in bodies if "input_file_name" not in body]
    # A file order never got an operationId back; an API order did (SPEC §4, §9 #12).
    assert by_file and all("operation_id" not in body for body in by_file)
    assert by_api and all("operation_id" in body for body in by_api)


@pytest.mark.parametrize(
    ("site", "stage", "slower"),
    [
        ("PERSO-SITE-EU-02", "CARD_PROD_ONGOING", True),
        ("PERSO-SITE-US-01", "CARD_PROD_DONE", True),
        ("PERSO-SITE-APAC-01", "CARD_PROD_READY", True),
        ("PERSO-SITE-EU-02", "CARD_PROD_READY", False),
    ],
)
def test_sites_have_their_own_stage_times(site: str, stage: str, slower: bool) -> None:
    operations = _produce(_operations(orders=400, seed=5, **NO_VARIATION))
    times: dict[str, list[float]] = defaultdict(list)
    for operation in operations:
        position = operation.statuses.index(stage)
        spent = operation.moments[position + 1] - operation.moments[position]
        times[operation.items[2]["details"]["productionSite"]].append(spent.total_seconds())

    at_site = statistics.median(times[site])
    elsewhere = statistics.median(t for other, ts in times.items() if other != site for t in ts)
    if slower:
        assert at_site > 2 * elsewhere
    else:
        assert 0.6 * elsewhere < at_site < 1.6 * elsewhere


def test_same_seed_same_schedule() -> None:
    first = _operations(orders=80, seed=9)
    second = _operations(orders=80, seed=9)

    assert [op.items for op in first.values()] == [op.items for op in second.values()]
    assert [op.moments for op in first.values()] == [op.moments for op in second.values()]


def test_orders_of_a_finite_run_overlap_in_time() -> None:
    operations = _produce(_operations(orders=60, **NO_VARIATION))
    spans = sorted((op.moments[0], op.moments[-1]) for op in operations)

    overlapping = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    assert overlapping > len(spans) / 2
