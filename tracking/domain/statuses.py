"""The status classes and rank tables: what each D1 status code and carrier class means."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracking.domain import carrier_status

# ---------------------------------------------------------------------------- tables

# details.status → rank. Normal path from SPEC §3; failures above every normal step, each with
# its own rank so that two different failures still fold the same way in any order.
PRODUCTION_RANK: Mapping[str, int] = {
    "CARD_PROD_REQUESTED": 10,
    "DATA_PREPARED": 20,
    "CARD_PROD_READY": 30,
    "CARD_PROD_ONGOING": 40,
    "CARD_PROD_DONE": 50,
    "CARD_SHIPPED": 60,
    "CARD_RETURNED": 70,  # tracking hub RETURN
    "DATA_EXCEPTION": 100,
    "CARD_PROD_EXCEPTION": 101,
    "CARD_PROD_CANCELED": 102,
}
FAILURE_STATUSES = frozenset({"DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_CANCELED"})
SHIPPED_OR_RETURNED_STATUSES = frozenset({"CARD_SHIPPED", "CARD_RETURNED"})
TERMINAL_STATUSES = FAILURE_STATUSES | SHIPPED_OR_RETURNED_STATUSES

# The operation's own status (SPEC §1.4). Once SUCCESSFUL or FAILED the operation does not go
# back to PENDING (SPEC §3); on a tie of times the more final word is the later one.
FAILED = "FAILED"
OPERATION_STATUS_RANK: Mapping[str, int] = {"PENDING": 0, "SUCCESSFUL": 1, FAILED: 2}
COMPLETED_STATUSES = frozenset({"SUCCESSFUL", FAILED})

# The central-issuance PRODUCE path, used to see steps that were skipped.
PRODUCE_PATH: tuple[str, ...] = (
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
    "CARD_SHIPPED",
)

# Carrier statuses inside details.shipment.status are not published by D1 (SPEC §2.3); each is
# read as one class of a parcel's life by `tracking.domain.carrier_status`. D1's times decide which
# carrier update is current; the class's rank only breaks a tie of times. A word never seen is
# the class `unknown`: kept and shown as sent, never an unknown code by itself.
NO_SHIPMENT_STATUS_RANK = -1
# Carrier classes after which nothing more is expected from the carrier.
FINAL_SHIPMENT_CLASSES = carrier_status.FINAL_CLASSES
# After-shipment classes of the carrier status (the queues of tracking.selectors.order_queues).
DELIVERED_SHIPMENT_CLASSES = frozenset({carrier_status.DELIVERED})
RETURNED_SHIPMENT_CLASSES = frozenset({carrier_status.RETURNED})
DELIVERY_FAILED_SHIPMENT_CLASSES = frozenset({carrier_status.FAILED_ATTEMPT})
# Carrier classes that are real problems: the order is an exception.
PROBLEM_SHIPMENT_CLASSES = carrier_status.PROBLEM_CLASSES
UNKNOWN_SHIPMENT_CLASS = carrier_status.UNKNOWN

# ---------------------------------------------------------------------------- status classes
# What each class of status means for staff. The queues, the partial indexes, the sweep and the
# admin's colours are built from these names, never from literal codes.

# Cancelled at the issuer's request: a failure of the operation, but not an exception.
CANCELLED_STATUSES = frozenset({"CARD_PROD_CANCELED"})
# Production failed (D1's DATA_EXCEPTION, CARD_PROD_EXCEPTION): the failures that need staff.
FAILED_PRODUCTION_STATUSES = FAILURE_STATUSES - CANCELLED_STATUSES
# The tracking hub's RETURN; a carrier's return is in RETURNED_SHIPMENT_CLASSES.
RETURNED_PRODUCTION_STATUSES = frozenset({"CARD_RETURNED"})
# Shipped: the stage after which the carrier's updates follow, until the carrier is final.
SHIPPED_STATUS = "CARD_SHIPPED"
AWAITING_DELIVERY_STATUS = SHIPPED_STATUS
# The stages an order can wait in, in path order: each has a time limit (the stage thresholds'
# keys, RECONCILE_STAGE_THRESHOLDS) beyond which it is stuck.
NON_TERMINAL_STATUSES: tuple[str, ...] = tuple(
    s for s in PRODUCTION_RANK if s not in TERMINAL_STATUSES
)

# Operations whose items make up a card order; any other operation (UPDATE_ORDER, ...) is stored
# and shown on the card's timeline without touching an order.
TRACKED_OPERATIONS = frozenset({"PRODUCE", "STANDALONE_TRACKING"})


def production_rank(status: str) -> int | None:
    """The rank of a `details.status`, or None for a code the portal does not know."""
    return PRODUCTION_RANK.get(status)


def shipment_class(shipment: Mapping[str, Any] | None) -> str:
    """The class of a shipment's carrier status ("" when it has none)."""
    if not shipment:
        return ""
    return carrier_status.carrier_status_class(shipment.get("status"))


def shipment_rank(shipment: Mapping[str, Any] | None) -> int:
    """The carrier class's place in a parcel's life, for ties of D1's times."""
    klass = shipment_class(shipment)
    return carrier_status.class_rank(klass) if klass else NO_SHIPMENT_STATUS_RANK
