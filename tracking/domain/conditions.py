"""The status classes of `tracking.domain.statuses` as conditions over `CardOrder`'s own columns.

What an exception, a failure, a cancellation, a return, a delivery or an order awaiting
delivery is, said once: the queues (`tracking.selectors.order_queues`) filter with these, and
the partial indexes of `CardOrder` are built from them, so a changed rule changes its index
with it (a migration). Each `*_q` has an in-memory twin where pages need one (`is_*`).
"""

from __future__ import annotations

from django.db.models import Q

from tracking.domain.statuses import (
    AWAITING_DELIVERY_STATUS,
    CANCELLED_STATUSES,
    DELIVERED_SHIPMENT_CLASSES,
    DELIVERY_FAILED_SHIPMENT_CLASSES,
    FAILED,
    FAILED_PRODUCTION_STATUSES,
    NON_TERMINAL_STATUSES,
    PROBLEM_SHIPMENT_CLASSES,
    RETURNED_PRODUCTION_STATUSES,
    RETURNED_SHIPMENT_CLASSES,
    UNKNOWN_SHIPMENT_CLASS,
)


def exception_q() -> Q:
    """Orders D1 reported as failed, or whose events conflict, carry unknown codes or an error.

    The partial index `order_exception_recent` is built from this condition.
    """
    return (
        # D1 reports a cancellation as a FAILED operation; it is not an exception.
        failed_q()
        | Q(has_conflict=True)
        | Q(has_unknown_status=True)
        | ~Q(error_code="")
        | returned_q()
        | carrier_problem_q()
        | ~Q(exception_reason="")
    )


def failed_q() -> Q:
    """Orders that failed: a failure step, or an operation D1 reported FAILED at any step.

    A cancellation is the issuer's decision, not a failure, whatever its operation status.
    """
    return Q(production_status__in=sorted(FAILED_PRODUCTION_STATUSES)) | (
        Q(operation_status=FAILED) & ~Q(production_status__in=sorted(CANCELLED_STATUSES))
    )


def is_failed(order) -> bool:
    """The rule of `failed_q`, for one order already in memory."""
    return order.production_status in FAILED_PRODUCTION_STATUSES or (
        order.operation_status == FAILED and order.production_status not in CANCELLED_STATUSES
    )


def is_exception(order) -> bool:
    """The rule of `exception_q`, for one order already in memory."""
    return bool(
        is_failed(order)
        or order.has_conflict
        or order.has_unknown_status
        or order.error_code
        or is_returned(order)
        or order.shipment_class in PROBLEM_SHIPMENT_CLASSES
        or order.exception_reason
    )


def cancelled_q() -> Q:
    return Q(production_status__in=sorted(CANCELLED_STATUSES))


def awaiting_delivery_q() -> Q:
    """Shipped orders whose carrier has not reported a final status."""
    return Q(production_status=AWAITING_DELIVERY_STATUS, shipment_final=False)


def superseded_q() -> Q:
    return Q(superseded_by__isnull=False)


def delivered_q() -> Q:
    """The carrier's class is delivered, whatever word it used
    (`tracking.domain.carrier_status`)."""
    return Q(shipment_class__in=sorted(DELIVERED_SHIPMENT_CLASSES))


def returned_q() -> Q:
    """Returned by the tracking hub (CARD_RETURNED) or by the carrier (an exception)."""
    return Q(production_status__in=sorted(RETURNED_PRODUCTION_STATUSES)) | Q(
        shipment_class__in=sorted(RETURNED_SHIPMENT_CLASSES)
    )


def is_returned(order) -> bool:
    return (
        order.production_status in RETURNED_PRODUCTION_STATUSES
        or order.shipment_class in RETURNED_SHIPMENT_CLASSES
    )


def carrier_problem_q() -> Q:
    """The carrier reports a real problem (lost, damaged, held, returned): an exception."""
    return Q(shipment_class__in=sorted(PROBLEM_SHIPMENT_CLASSES))


def delivery_failed_q() -> Q:
    return Q(shipment_class__in=sorted(DELIVERY_FAILED_SHIPMENT_CLASSES))


def carrier_word_unknown_q() -> Q:
    """The current carrier word is one the portal does not understand (shown as sent)."""
    return Q(shipment_class=UNKNOWN_SHIPMENT_CLASS)


def cancel_unconfirmed_q() -> Q:
    """An accepted pull & change CANCEL that D1 has not confirmed with CARD_PROD_CANCELED."""
    return Q(cancel_accepted_at__isnull=False) & ~Q(
        production_status__in=sorted(CANCELLED_STATUSES)
    )


def likely_late_q() -> Q:
    """Open orders, before shipment, whose p50 predicted ship date passes their dueDate (the
    flag the insight refresh writes on each prediction; see services.predictions)."""
    return Q(
        prediction__likely_late=True,
        is_terminal=False,
        production_status__in=NON_TERMINAL_STATUSES,
    )


def waiting_q() -> Q:
    """Orders still waiting on D1: not in a final stage and not superseded by a newer operation
    of their card (index `order_waiting_stage`, the stuck counts' range per stage)."""
    return Q(is_terminal=False, superseded_by__isnull=True)
