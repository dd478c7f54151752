"""The work queues staff follow: exceptions, stuck orders and cancellations, as query conditions.

One place says what each queue means, so that the admin lists, the dashboard counts and the
CSV export agree. Every condition is a `Q` over `CardOrder` columns that have an index.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from tracking.rules import FAILURE_STATUSES, PRODUCTION_RANK, TERMINAL_STATUSES

CANCELLED_STATUSES = frozenset({"CARD_PROD_CANCELED"})
# Failures that need staff attention; a cancellation is the issuer's own decision.
EXCEPTION_STATUSES = frozenset(FAILURE_STATUSES - CANCELLED_STATUSES)
FAILED_OPERATION_STATUS = "FAILED"
NON_TERMINAL_STATUSES = tuple(s for s in PRODUCTION_RANK if s not in TERMINAL_STATUSES)


def exception_q() -> Q:
    """Orders D1 reported as failed, or whose events conflict, carry unknown codes or an error.

    `CardOrder.Meta` has a partial index with exactly this condition (`order_exception_recent`).
    """
    return (
        Q(production_status__in=sorted(EXCEPTION_STATUSES))
        # D1 reports a cancellation as a FAILED operation; it is not an exception.
        | (
            Q(operation_status=FAILED_OPERATION_STATUS)
            & ~Q(production_status__in=sorted(CANCELLED_STATUSES))
        )
        | Q(has_conflict=True)
        | Q(has_unknown_status=True)
        | ~Q(error_code="")
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
    )


def acknowledged_q() -> Q:
    """Orders whose exception staff acknowledged after the last event arrived.

    A newer event re-opens the exception: the acknowledgement covered what was known then.
    """
    from tracking.models import OrderAcknowledgement

    return Q(
        Exists(
            OrderAcknowledgement.objects.filter(
                order=OuterRef("pk"), created_at__gte=OuterRef("last_event_at")
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
