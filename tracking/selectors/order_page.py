"""What the order page shows about one order, read at once; the admin's view only renders it.

The timeline's events (the newest TIMELINE_LIMIT), D1's answers to our asks, the
acknowledgements and the one that covers the exception as it is now, the next open exception,
why the order is in its state, and the shipment's dates and expected delivery.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet

from tracking.domain import conditions
from tracking.domain.statuses import DELIVERED_SHIPMENT_CLASSES, SHIPPED_STATUS
from tracking.domain.times import parse_time
from tracking.insight.delivery_predictions import carrier_updates, order_expected_delivery
from tracking.models import CardOrder, OperationEvent, OrderAcknowledgement, ReconcileAttempt
from tracking.selectors import order_queues
from tracking.selectors.explanation import order_explanation
from tracking.selectors.order_representation import awaiting_first_event
from tracking.selectors.order_timeline import order_timeline

TIMELINE_LIMIT = 500
ATTEMPTS_SHOWN = 20
ACKNOWLEDGEMENTS_SHOWN = 20


@dataclass
class OrderPage:
    """One order as its page shows it, as of `now`."""

    order: CardOrder
    now: dt.datetime
    events: list[OperationEvent] = field(default_factory=list)  # the newest TIMELINE_LIMIT
    timeline_truncated: bool = False
    attempts: list[ReconcileAttempt] = field(default_factory=list)  # newest ATTEMPTS_SHOWN
    attempt_count: int = 0
    acknowledgements: list[OrderAcknowledgement] = field(default_factory=list)
    exception: bool = False
    current_acknowledgement: OrderAcknowledgement | None = None
    # The next open exception after this one in the Exceptions list, when this one is covered.
    next_exception_id: int | None = None
    awaiting_first_event: bool = False
    explanation: list = field(default_factory=list)
    expected_delivery: Any = None
    carrier_updates: list = field(default_factory=list)
    shipped_on: dt.datetime | None = None
    delivered_on: dt.datetime | None = None


def order_page(order: CardOrder, *, now: dt.datetime, orders: QuerySet[CardOrder]) -> OrderPage:
    """Read the order page of `order`; `orders` are those the reader may open (their grant),
    among which the next open exception is looked for."""
    events = list(order_timeline(order)[: TIMELINE_LIMIT + 1])
    attempts = reconcile_attempts(order)
    acknowledgements = list(order.acknowledgements.select_related("user")[:ACKNOWLEDGEMENTS_SHOWN])
    exception = conditions.is_exception(order)
    current = current_acknowledgement(order, acknowledgements) if exception else None
    return OrderPage(
        order=order,
        now=now,
        events=events[:TIMELINE_LIMIT],
        timeline_truncated=len(events) > TIMELINE_LIMIT,
        attempts=attempts,
        attempt_count=len(attempts)
        if len(attempts) < ATTEMPTS_SHOWN
        else ReconcileAttempt.objects.filter(order=order).count(),
        acknowledgements=acknowledgements,
        exception=exception,
        current_acknowledgement=current,
        next_exception_id=next_exception_id(order, orders) if current else None,
        awaiting_first_event=awaiting_first_event(order),
        explanation=order_explanation(order),
        expected_delivery=order_expected_delivery(order),
        carrier_updates=carrier_updates(order, events[:TIMELINE_LIMIT]),
        shipped_on=shipped_on(order),
        delivered_on=delivered_on(order),
    )


def reconcile_attempts(order: CardOrder) -> list[ReconcileAttempt]:
    """The newest ATTEMPTS_SHOWN asks of D1 about `order`, newest first."""
    return list(
        ReconcileAttempt.objects.filter(order=order)
        .select_related("requested_by")
        .order_by("-started_at", "-pk")[:ATTEMPTS_SHOWN]
    )


def acknowledgement_covers(order: CardOrder, acknowledged_at: dt.datetime | None) -> bool:
    """An acknowledgement made then still covers the exception (see `current_acknowledgement`)."""
    if acknowledged_at is None:
        return False
    changed = order.exception_changed_at
    return changed is None or acknowledged_at >= changed


def current_acknowledgement(order: CardOrder, acknowledgements: list):
    """The acknowledgement that covers the exception as it is now, by the queue's own rule.

    Only a change of the exception itself (`exception_changed_at`, see
    `order_queues.acknowledged_q`) re-opens it; the next carrier update does not.
    """
    if not acknowledgements:
        return None
    latest = acknowledgements[0]
    changed = order.exception_changed_at
    if changed is not None and latest.created_at < changed:
        return None
    return latest


def next_exception_id(order: CardOrder, orders: QuerySet[CardOrder]) -> int | None:
    """The next open exception after this one among `orders`, in the Exceptions list's order
    (first flagged); else the first of that list."""
    open_exceptions = orders.filter(order_queues.open_exception_q()).exclude(pk=order.pk)
    flagged = order.exception_changed_at
    if flagged is None:
        following = open_exceptions.filter(exception_changed_at__isnull=True, pk__gt=order.pk)
    else:
        following = open_exceptions.filter(
            Q(exception_changed_at__gt=flagged) | Q(exception_changed_at=flagged, pk__gt=order.pk)
        )
    ordering = order_queues.QUEUES["exceptions"].ordering or ("-updated_at", "-id")
    next_pk = following.order_by(*ordering).values_list("pk", flat=True).first()
    if next_pk is None:
        next_pk = open_exceptions.order_by(*ordering).values_list("pk", flat=True).first()
    return next_pk


def shipped_on(order: CardOrder) -> dt.datetime | None:
    """When the card was handed to the carrier (CARD_SHIPPED's first notification)."""
    first_seen = (order.stage_first_seen or {}).get(SHIPPED_STATUS)
    return parse_time(first_seen) if isinstance(first_seen, str) else None


def delivered_on(order: CardOrder) -> dt.datetime | None:
    """When the carrier's delivery was first reported, if it was."""
    if order.shipment_class not in DELIVERED_SHIPMENT_CLASSES:
        return None
    # The first event with the carrier's own delivered word (its class is the order's).
    return (
        OperationEvent.objects.filter(order=order, shipment_status=order.shipment_status)
        .order_by("first_received_at")
        .values_list("first_received_at", flat=True)
        .first()
    )
