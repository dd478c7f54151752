"""An order's timeline: its events and the card's other operations, as they came."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from tracking.models import CardOrder, OperationEvent


def order_timeline(order: CardOrder) -> QuerySet[OperationEvent]:
    """The order's events and the card's other operations (UPDATE_ORDER, ...), as they came."""
    return (
        OperationEvent.objects.filter(
            Q(order=order) | Q(order__isnull=True, issuer_id=order.issuer_id, card_id=order.card_id)
        )
        .select_related("change")
        .order_by("first_received_at", "id")
    )
