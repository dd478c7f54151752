"""What changed → which events: the one rule that turns two states of an order into event types.

Pure: it reads two `OrderFacts` (the order before and after a write) and nothing else. Every
write point (ingest's two engines, refresh, rederive, registration, supersession, the silent
sweep) takes the facts before and after and asks this module, so an event means the same
whoever wrote the change.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracking.domain import conditions
from tracking.domain.statuses import (
    CANCELLED_STATUSES,
    DELIVERED_SHIPMENT_CLASSES,
    FAILED,
    FAILED_PRODUCTION_STATUSES,
    NON_TERMINAL_STATUSES,
    PROBLEM_SHIPMENT_CLASSES,
    SHIPPED_STATUS,
)

REGISTERED = "card_order.registered"
STAGE_CHANGED = "card_order.stage_changed"
SHIPPED = "card_order.shipped"
DELIVERY_UPDATED = "card_order.delivery_updated"
DELIVERED = "card_order.delivered"
EXCEPTION = "card_order.exception"
FAILED_EVENT = "card_order.failed"
CANCELLED = "card_order.cancelled"
SUPERSEDED = "card_order.superseded"
SILENT = "card_order.silent"


@dataclass(frozen=True)
class OrderFacts:
    """The parts of an order's state that events speak of."""

    production_status: str = ""
    production_rank: int | None = None
    # The class of the carrier's latest word (`tracking.domain.statuses.shipment_class`): a new
    # carrier word of the same class is no event.
    carrier_class: str = ""
    failed: bool = False
    cancelled: bool = False
    exception: bool = False
    exception_reason: str = ""
    superseded: bool = False
    silent: bool = False


def order_facts(order, *, superseded: bool = False, silent: bool = False) -> OrderFacts:
    """The facts of `order` as it is in memory; `superseded` and `silent` are the caller's word
    (no fold changes them, so a write point that does not set them passes the default)."""
    failed = conditions.is_failed(order)
    exception = conditions.is_exception(order)
    return OrderFacts(
        production_status=order.production_status or "",
        production_rank=order.production_rank,
        carrier_class=order.shipment_class or "",
        failed=failed,
        cancelled=order.production_status in CANCELLED_STATUSES,
        exception=exception,
        exception_reason=exception_reason(order) if exception else "",
        superseded=superseded,
        silent=silent,
    )


def exception_reason(order) -> str:
    """Why `order` is in Exceptions, in codes a machine can switch on (first reason wins)."""
    if order.production_status in FAILED_PRODUCTION_STATUSES:
        return order.production_status
    if order.operation_status == FAILED:
        return "operation_failed"
    if conditions.is_returned(order):
        return "returned"
    if order.shipment_class in PROBLEM_SHIPMENT_CLASSES:
        return f"carrier_{order.shipment_class}"
    if order.error_code:
        return "d1_error"
    if order.has_conflict:
        return "conflict"
    if order.has_unknown_status:
        return "unknown_code"
    return order.exception_reason or "exception"


def change_events(before: OrderFacts | None, after: OrderFacts) -> list[str]:
    """The event types a change from `before` to `after` makes, in a stable order.

    `before` None: the order is new (registered by the issuer). Facts that did not change make
    nothing, so copies, stale items and re-derivations that change nothing emit nothing. A
    failure is `failed` (not also `exception`); `exception` is entering Exceptions any other way
    (a conflict, an unknown code, D1's error, a return, the portal's own reason).
    """
    if before is None:
        return [REGISTERED]
    types: list[str] = []
    moved_forward = (after.production_rank or 0) > (before.production_rank or 0)
    if moved_forward and after.production_status in NON_TERMINAL_STATUSES:
        types.append(STAGE_CHANGED)
    if after.production_status == SHIPPED_STATUS and before.production_status != SHIPPED_STATUS:
        types.append(SHIPPED)
    if after.carrier_class != before.carrier_class and after.carrier_class:
        if after.carrier_class in DELIVERED_SHIPMENT_CLASSES:
            types.append(DELIVERED)
        else:
            types.append(DELIVERY_UPDATED)
    if after.failed and not before.failed:
        types.append(FAILED_EVENT)
    elif after.exception and not before.exception and not after.cancelled:
        types.append(EXCEPTION)
    if after.cancelled and not before.cancelled:
        types.append(CANCELLED)
    if after.superseded and not before.superseded:
        types.append(SUPERSEDED)
    if after.silent and not before.silent:
        types.append(SILENT)
    return types
