"""The work queues staff follow: exceptions, stuck orders and cancellations, as query conditions.

One place says what each queue means, so that the admin lists, the dashboard counts and the
CSV export agree. Every condition is a `Q` over `CardOrder` columns that have an index.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from tracking.rules import (
    DELIVERED_SHIPMENT_STATUSES,
    DELIVERY_FAILED_SHIPMENT_STATUSES,
    FAILURE_STATUSES,
    PRODUCTION_RANK,
    RETURNED_SHIPMENT_STATUSES,
    TERMINAL_STATUSES,
)

CANCELLED_STATUSES = frozenset({"CARD_PROD_CANCELED"})
# Failures that need staff attention; a cancellation is the issuer's own decision.
EXCEPTION_STATUSES = frozenset(FAILURE_STATUSES - CANCELLED_STATUSES)
FAILED_OPERATION_STATUS = "FAILED"
NON_TERMINAL_STATUSES = tuple(s for s in PRODUCTION_RANK if s not in TERMINAL_STATUSES)
# The tracking hub's RETURN (a production status) and a carrier's return both send the card back.
RETURNED_PRODUCTION_STATUSES = frozenset({"CARD_RETURNED"})
SHIPPED_STATUS = "CARD_SHIPPED"


def exception_q() -> Q:
    """Orders D1 reported as failed, or whose events conflict, carry unknown codes or an error.

    `CardOrder.Meta` has a partial index with exactly this condition (`order_exception_recent`).
    """
    return (
        # D1 reports a cancellation as a FAILED operation; it is not an exception.
        failed_q()
        | Q(has_conflict=True)
        | Q(has_unknown_status=True)
        | ~Q(error_code="")
        | returned_q()
        | ~Q(exception_reason="")
    )


def failed_q() -> Q:
    """Orders that failed: a failure step, or an operation D1 reported FAILED at any step.

    A cancellation is the issuer's decision, not a failure, whatever its operation status.
    """
    return Q(production_status__in=sorted(EXCEPTION_STATUSES)) | (
        Q(operation_status=FAILED_OPERATION_STATUS)
        & ~Q(production_status__in=sorted(CANCELLED_STATUSES))
    )


def is_exception(order) -> bool:
    """The rule of `exception_q`, for one order already in memory."""
    return bool(
        order.production_status in EXCEPTION_STATUSES
        or (
            order.operation_status == FAILED_OPERATION_STATUS
            and order.production_status not in CANCELLED_STATUSES
        )
        or order.has_conflict
        or order.has_unknown_status
        or order.error_code
        or is_returned(order)
        or order.exception_reason
    )


def acknowledged_q() -> Q:
    """Orders whose exception staff acknowledged after it last changed.

    A new failure or error code, a new conflict or a new unknown code re-opens the exception
    (`exception_changed_at`); other news, such as the next carrier update, does not.
    """
    from tracking.models import OrderAcknowledgement

    return Q(
        Exists(
            OrderAcknowledgement.objects.filter(
                order=OuterRef("pk"), created_at__gte=OuterRef("exception_changed_at")
            )
        )
    )


def open_exception_q() -> Q:
    return exception_q() & ~acknowledged_q()


def cancelled_q() -> Q:
    return Q(production_status__in=sorted(CANCELLED_STATUSES))


def stage_threshold(status: str) -> dt.timedelta:
    """How long an order may stay in `status` before it counts as stuck."""
    seconds = settings.RECONCILE_STAGE_THRESHOLDS.get(status)
    if seconds is None:
        return settings.RECONCILE_DEFAULT_STAGE_THRESHOLD
    return dt.timedelta(seconds=seconds)


def stage_thresholds() -> dict[str, dt.timedelta]:
    """The threshold of every non-terminal stage, configured or default."""
    statuses = dict.fromkeys([*NON_TERMINAL_STATUSES, *settings.RECONCILE_STAGE_THRESHOLDS])
    return {s: stage_threshold(s) for s in statuses if s not in TERMINAL_STATUSES}


def stuck_q(*, now: dt.datetime) -> Q:
    """Non-terminal orders that entered their current stage longer ago than its threshold.

    One range per stage on the (production_status, stage_entered_at) index.
    """
    condition = Q()
    for status, threshold in stage_thresholds().items():
        condition |= Q(production_status=status, stage_entered_at__lt=now - threshold)
    return condition & Q(is_terminal=False)


def within_threshold_q(*, now: dt.datetime) -> Q:
    condition = Q()
    for status, threshold in stage_thresholds().items():
        condition |= Q(production_status=status, stage_entered_at__gte=now - threshold)
    return condition & Q(is_terminal=False)


def likely_late_q() -> Q:
    """Open orders predicted (p50) to ship after their dueDate; see services.predictions."""
    from tracking.services.predictions import likely_late_q as predicted_late_q

    return predicted_late_q()


def is_stuck(*, production_status: str, is_terminal: bool, stage_entered_at, now) -> bool:
    """The same rule as `stuck_q`, for one order already in memory."""
    if is_terminal or stage_entered_at is None or production_status in TERMINAL_STATUSES:
        return False
    if production_status not in stage_thresholds():
        return False
    return now - stage_entered_at > stage_threshold(production_status)


# ---------------------------------------------------------------------------- the issuer's side


def registered_waiting_q() -> Q:
    """Registered orders D1 has not spoken about yet (index `order_awaiting_first_event`)."""
    return Q(event_count=0, superseded_by__isnull=True, registered_at__isnull=False)


def silent_after(issuer_id: str) -> dt.timedelta:
    """How long a registered order of `issuer_id` may wait for D1's first word."""
    seconds = settings.REGISTERED_SILENT_OVERRIDES.get(issuer_id)
    if seconds is None:
        return settings.REGISTERED_SILENT_AFTER
    return dt.timedelta(seconds=int(seconds))


def silent_q(*, now: dt.datetime) -> Q:
    """Registered orders still without any event after their issuer's silence threshold.

    One range on `order_awaiting_first_event` per issuer with its own threshold, one for the rest.
    """
    from tracking.models import Issuer

    overrides = settings.REGISTERED_SILENT_OVERRIDES
    condition = Q()
    other = Q()
    if overrides:
        pks = dict(
            Issuer.objects.filter(issuer_id__in=list(overrides)).values_list("issuer_id", "pk")
        )
        for issuer_id, pk in sorted(pks.items()):
            condition |= Q(issuer_id=pk, registered_at__lt=now - silent_after(issuer_id))
        other = ~Q(issuer_id__in=sorted(pks.values()))
    condition |= other & Q(registered_at__lt=now - settings.REGISTERED_SILENT_AFTER)
    return registered_waiting_q() & condition


def is_silent(order, *, now: dt.datetime) -> bool:
    """The rule of `silent_q`, for one order already in memory (its issuer loaded)."""
    if order.registered_at is None or order.event_count or order.superseded_by_id:
        return False
    return now - order.registered_at > silent_after(order.issuer.issuer_id)


def superseded_q() -> Q:
    return Q(superseded_by__isnull=False)


def delivered_q() -> Q:
    return Q(shipment_status__in=sorted(DELIVERED_SHIPMENT_STATUSES))


def returned_q() -> Q:
    """Returned by the tracking hub (CARD_RETURNED) or by the carrier (an exception)."""
    return Q(production_status__in=sorted(RETURNED_PRODUCTION_STATUSES)) | Q(
        shipment_status__in=sorted(RETURNED_SHIPMENT_STATUSES)
    )


def is_returned(order) -> bool:
    return (
        order.production_status in RETURNED_PRODUCTION_STATUSES
        or order.shipment_status in RETURNED_SHIPMENT_STATUSES
    )


def delivery_failed_q() -> Q:
    return Q(shipment_status__in=sorted(DELIVERY_FAILED_SHIPMENT_STATUSES))


def in_transit_long_q(*, now: dt.datetime) -> Q:
    """Shipped longer ago than SHIPMENT_IN_TRANSIT_THRESHOLD and the carrier not final yet.

    A range on `order_status_stage` (CARD_SHIPPED, entered before the cut-off).
    """
    return Q(
        production_status=SHIPPED_STATUS,
        stage_entered_at__lt=now - settings.SHIPMENT_IN_TRANSIT_THRESHOLD,
        shipment_final=False,
    )


def cancel_unconfirmed_q() -> Q:
    """An accepted pull & change CANCEL that D1 has not confirmed with CARD_PROD_CANCELED."""
    return Q(cancel_accepted_at__isnull=False) & ~Q(
        production_status__in=sorted(CANCELLED_STATUSES)
    )


# The issuer's-side and after-shipment queues: name → (label, condition at `now`). The admin's
# queue filter, its tabs and the dashboard read them from here.
ISSUER_QUEUES = {
    "silent": ("Silent (registered, nothing from D1)", lambda now: silent_q(now=now)),
    "registered": ("Registered, no events yet", lambda now: registered_waiting_q()),
    "superseded": ("Superseded by a newer operation", lambda now: superseded_q()),
    "delivered": ("Delivered", lambda now: delivered_q()),
    "in_transit_long": ("In transit too long", lambda now: in_transit_long_q(now=now)),
    "returned": ("Returned", lambda now: returned_q()),
    "delivery_failed": ("Delivery failed", lambda now: delivery_failed_q()),
}
