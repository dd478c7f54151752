"""Two small stand-in portals for verify's tests, each folding what it received into read-API rows.

`fold_by_times` follows SPEC §7 ("What the docs leave open"): the production step only moves
forward by rank (SPEC §3); everything else comes from the latest item by D1's times (an item
with `endTime` after every item without one, then the later `endTime`, then the later
`startTime`), a rank (the step, then the carrier class's place in a shipment's life, SPEC §9
#6) and the content breaking ties. `fold_by_arrival` is the mistake of issue 9: inside a rank,
the item received last wins. Written from SPEC alone, never from the portal; the carrier classes
are the sandbox's own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from d1sandbox.vocabulary import carrier_word_class

RANKS = {
    "CARD_PROD_REQUESTED": 10,
    "DATA_PREPARED": 20,
    "CARD_PROD_READY": 30,
    "CARD_PROD_ONGOING": 40,
    "CARD_PROD_DONE": 50,
    "CARD_SHIPPED": 60,
    "DATA_EXCEPTION": 100,
    "CARD_PROD_EXCEPTION": 100,
    "CARD_PROD_CANCELED": 100,
    "CARD_RETURNED": 100,
}
TERMINAL = {"CARD_SHIPPED", "DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_CANCELED"}
TERMINAL |= {"CARD_RETURNED"}
ORDER_OPERATIONS = {"PRODUCE", "STANDALONE_TRACKING"}
# A carrier class's place in a shipment's life; delivered and returned are final.
LIFE_RANKS = {
    "unknown": 0,
    "info_received": 1,
    "in_transit": 2,
    "out_for_delivery": 3,
    "failed_attempt": 4,
    "available_for_pickup": 5,
    "exception": 6,
    "expired": 7,
    "delivered": 9,
    "returned": 9,
}


def _details(item: dict[str, Any]) -> dict[str, Any]:
    details = item.get("details")
    return details if isinstance(details, dict) else {}


def _rank(item: dict[str, Any]) -> int:
    return RANKS.get(_details(item).get("status"), 0)


def _carrier_class(item: dict[str, Any]) -> str | None:
    shipment = _details(item).get("shipment")
    return carrier_word_class(str(shipment.get("status"))) if isinstance(shipment, dict) else None


def _by_times(item: dict[str, Any]) -> tuple:
    end_time = item.get("endTime") or ""
    content = json.dumps(item, sort_keys=True)
    life = LIFE_RANKS.get(_carrier_class(item) or "unknown", 0)
    return (bool(end_time), end_time, item.get("startTime") or "", _rank(item), life, content)


def fold_by_times(arrivals: Iterable[dict[str, Any]], issuer_id: str) -> list[dict[str, Any]]:
    return _fold(arrivals, issuer_id, latest=lambda items: max(items, key=_by_times))


def fold_by_arrival(arrivals: Iterable[dict[str, Any]], issuer_id: str) -> list[dict[str, Any]]:
    # Items keep their first arrival; the highest rank wins and, inside it, the last received.
    def latest(items: list[dict[str, Any]]) -> dict[str, Any]:
        return max(enumerate(items), key=lambda pair: (_rank(pair[1]), pair[0]))[1]

    return _fold(arrivals, issuer_id, latest=latest)


def _fold(arrivals: Iterable[dict[str, Any]], issuer_id: str, *, latest) -> list[dict[str, Any]]:
    orders: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for item in arrivals:
        fingerprint = json.dumps(item, sort_keys=True)
        if item.get("operation") not in ORDER_OPERATIONS or fingerprint in seen:
            continue
        seen.add(fingerprint)
        orders[(item["cardId"], item["operationId"])].append(item)
    return [_row(items, issuer_id, latest) for items in orders.values()]


def _row(items: list[dict[str, Any]], issuer_id: str, latest) -> dict[str, Any]:
    stepped = [item for item in items if _rank(item)]
    step = max(stepped, key=_rank) if stepped else None
    last = latest(items)
    with_shipment = [item for item in items if isinstance(_details(item).get("shipment"), dict)]
    shipment = _details(latest(with_shipment))["shipment"] if with_shipment else None
    production_status = _details(step)["status"] if step else None
    completed = bool(last.get("endTime")) and last.get("status") in ("SUCCESSFUL", "FAILED")
    named = [item for item in items if _details(item).get("status")]
    last_named = _details(latest(named))["status"] if named else None
    hold_code = last_named if last_named not in RANKS and not completed else ""
    row: dict[str, Any] = {
        "issuer_id": issuer_id,
        "card_id": items[0]["cardId"],
        "operation_id": items[0]["operationId"],
        "operation": items[0]["operation"],
        "production_status": production_status,
        "operation_status": last.get("status"),
        "is_terminal": production_status in TERMINAL or completed,
        "hold_code": hold_code,
        "has_unknown_status": bool(hold_code),
        "start_time": items[0].get("startTime"),
        "end_time": last.get("endTime"),
        "error_code": last.get("errorCode"),
        "error": last.get("error"),
        "reason": _details(last).get("reason"),
        "shipment": None,
        "unknown_codes": sorted(
            {
                _details(item)["status"]
                for item in items
                if _details(item).get("status") and _details(item)["status"] not in RANKS
            }
        ),
        "tracking_type": None,
    }
    if shipment is not None:
        row["shipment"] = {
            "carrier": shipment.get("carrier"),
            "tracking_number": shipment.get("trackingNumber"),
            "tracking_url": shipment.get("trackingUrl"),
            "status": shipment.get("status"),
            "normalized_status": carrier_word_class(str(shipment.get("status"))),
            "message": shipment.get("message"),
        }
    for item in sorted(items, key=_by_times):
        details = _details(item)
        row["production_site"] = details.get("productionSite") or row.get("production_site")
        row["due_date"] = details.get("dueDate") or row.get("due_date")
        row["tracking_type"] = details.get("trackingType") or row["tracking_type"]
        for name, d1_name in (
            ("issuer_request_id", "issuerRequestId"),
            ("input_file_name", "inputFileName"),
        ):
            row[name] = item.get(d1_name) or details.get(d1_name) or row.get(name)
    return row
