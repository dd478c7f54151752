"""Simulated orders follow SPEC §3: the steps, their fields, and the variations the feed injects."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from d1sandbox.lifecycle import CARRIER_CODES, KNOWN_DETAILS_STATUSES, OrderRates
from d1sandbox.planner import DeliveryPlanner, DeliveryRates, Happened, SimulatedClock

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


def _orders(*, orders: int = 400, seed: int = 3, **rates: float) -> dict[str, list[dict[str, Any]]]:
    planner = DeliveryPlanner(
        issuer_ids=["ISSUERX001", "ISSUERX002"],
        orders=orders,
        seed=seed,
        run_number=1,
        order_rates=OrderRates(**rates) if rates else OrderRates(0.1, 0.1, 0.1, 0.1),
        delivery=DeliveryRates(),
        clock=SimulatedClock(epoch=datetime(2026, 11, 27, tzinfo=UTC), rng=random.Random(1)),
    )
    items: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in planner.events():
        if isinstance(event, Happened):
            items[event.key.card_id].append(event.item)
    return items


def test_every_order_follows_its_lifecycle() -> None:
    orders = _orders()
    seen_paths: set[str] = set()

    for card_id, items in orders.items():
        assert CARD_ID.match(card_id)
        assert len({item["operationId"] for item in items}) == 1, "one operationId per order"
        assert OPERATION_ID.match(items[0]["operationId"])
        assert len({item["startTime"] for item in items}) == 1
        statuses = [item["details"]["status"] for item in items]
        if items[0]["operation"] == "STANDALONE_TRACKING":
            assert {item["details"]["trackingType"] for item in items} <= {
                "PRODUCTION",
                "SHIPMENT",
                "RETURN",
            }
            seen_paths.add("standalone")
            continue
        assert statuses[0] == "CARD_PROD_REQUESTED"
        known = [status for status in statuses if status != "CARD_PROD_ON_HOLD"]
        if "CARD_PROD_ON_HOLD" in statuses:
            seen_paths.add("on-hold")
            position = statuses.index("CARD_PROD_ON_HOLD")
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
            assert 2 <= len(shipped) <= 3
            carrier_statuses = [item["details"]["shipment"]["status"] for item in shipped]
            assert carrier_statuses[0] == "IN_TRANSIT"
            assert carrier_statuses[-1] == "DELIVERED"
            for item in shipped:
                assert item["status"] == "SUCCESSFUL"
                assert item["endTime"] == shipped[0]["endTime"]
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
    items = [item for order in _orders().values() for item in order]

    assert any("issuerRequestId" in item for item in items)
    assert any("inputFileName" in item["details"] for item in items)
    assert any("inputFileName" in item and "inputFileName" in item["details"] for item in items)


def test_ids_are_unique_per_order() -> None:
    orders = _orders(orders=300)

    operation_ids = [items[0]["operationId"] for items in orders.values()]
    assert len(orders) == 300
    assert len(set(operation_ids)) == 300


def test_with_no_variation_every_order_is_the_happy_path() -> None:
    orders = _orders(orders=50, exception_rate=0, cancel_rate=0, unknown_rate=0, standalone_rate=0)

    for items in orders.values():
        statuses = [item["details"]["status"] for item in items]
        assert statuses[:6] == PRODUCTION_ORDER
        assert set(statuses[6:]) == {"CARD_SHIPPED"}
