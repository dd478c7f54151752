"""What operators do to one card order from the back office: replay it, acknowledge its exception.

Reconciliation (asking D1 for the truth) lives in `tracking.services.reconcile`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from tracking.domain import masking
from tracking.domain.order_state import DERIVED_COLUMNS
from tracking.intake.ingest import refresh_orders
from tracking.intake.locking import orders_locked
from tracking.models import CardOrder, OrderAcknowledgement
from tracking.services.audit import Actor, audit_actor

logger = logging.getLogger(__name__)

# Columns whose change a replay reports; bookkeeping (updated_at) is left out.
_REPORTED_FIELDS = [*DERIVED_COLUMNS, "rules_version"]


@dataclass(frozen=True)
class ReplayResult:
    order_id: int
    changed: dict[str, tuple[object, object]]  # field -> (before, after)


def order_replay(*, order_id: int, actor: Actor) -> ReplayResult:
    """Re-derive one order's state from its stored events, under the order's row lock.

    Writes the order's derived columns and its events' outcomes (as any ingest does) and one
    `order.replay` audit entry for `actor`, in one transaction. Raises `CardOrder.DoesNotExist`
    for an unknown id.
    """
    with transaction.atomic():
        order = orders_locked(CardOrder.objects.filter(pk=order_id)).get()
        before = {name: getattr(order, name) for name in _REPORTED_FIELDS}
        refresh_orders([order], now=timezone.now())
        after = {name: getattr(order, name) for name in _REPORTED_FIELDS}
        changed = {k: (before[k], after[k]) for k in _REPORTED_FIELDS if before[k] != after[k]}
        audit_actor(
            actor, action="order.replay", targets=[order], details={"changed": sorted(changed)}
        )
    logger.info(
        "order replayed",
        extra={"order_id": order_id, "user": actor.user_id, "changed": list(changed)},
    )
    return ReplayResult(order_id=order_id, changed=changed)


def order_acknowledge(*, order_id: int, actor: Actor, note: str) -> OrderAcknowledgement:
    """Record that staff handled the order's exception; it leaves the Exceptions queue.

    The note is free text that viewers read: card numbers in it are masked before it is stored.
    Writes the acknowledgement and its `order.acknowledge` audit entry in one transaction.
    Raises `ValueError` for an empty note and `CardOrder.DoesNotExist` for an unknown id.
    """
    note = note.strip()
    if not note:
        raise ValueError("an acknowledgement needs a note")
    note = masking.free_text_mask(note)
    with transaction.atomic():
        order = CardOrder.objects.only("pk", "card_id", "operation_id").get(pk=order_id)
        acknowledgement = OrderAcknowledgement.objects.create(
            order=order, user=actor.user, note=note
        )
        audit_actor(
            actor,
            action="order.acknowledge",
            targets=[order],
            details={"acknowledgement": acknowledgement.pk},
        )
    logger.info("order exception acknowledged", extra={"order_id": order_id, "user": actor.user_id})
    return acknowledgement


def orders_acknowledge(*, order_ids: list[int], actor: Actor, note: str) -> int:
    """Acknowledge the exception of each order in `order_ids` with one note (bulk triage).

    Writes one acknowledgement per order (the note's card numbers masked, as for one order) and
    one `order.acknowledge` audit entry per order, all in one transaction; returns how many.
    Raises `ValueError` for an empty note.
    """
    note = note.strip()
    if not note:
        raise ValueError("an acknowledgement needs a note")
    note = masking.free_text_mask(note)
    with transaction.atomic():
        orders = list(
            CardOrder.objects.filter(pk__in=order_ids).only("pk", "card_id", "operation_id")
        )
        created = OrderAcknowledgement.objects.bulk_create(
            [OrderAcknowledgement(order=order, user=actor.user, note=note) for order in orders]
        )
        for order, acknowledgement in zip(orders, created, strict=True):
            audit_actor(
                actor,
                action="order.acknowledge",
                targets=[order],
                details={"acknowledgement": acknowledgement.pk, "bulk": len(orders)},
            )
    logger.info(
        "order exceptions acknowledged", extra={"orders": len(orders), "user": actor.user_id}
    )
    return len(orders)


def orders_assign(*, order_ids: list[int], actor: Actor, assignee) -> int:
    """Give the orders in `order_ids` to `assignee` ("Take it"), or to nobody (None).

    Writes `assignee` (not `updated_at`: a taken order keeps its place in every list) and one
    `order.assign` audit entry per order that changed hands, in one transaction; returns how
    many changed.
    """
    assignee_id = assignee.pk if assignee is not None else None
    with transaction.atomic():
        # In the lock order, as every writer of card orders takes them (intake.locking).
        orders = list(
            orders_locked(
                CardOrder.objects.filter(pk__in=order_ids)
                .exclude(assignee_id=assignee_id)
                .only("pk", "issuer_id", "card_id", "operation_id", "assignee_id")
            )
        )
        CardOrder.objects.filter(pk__in=[order.pk for order in orders]).update(
            assignee_id=assignee_id
        )
        for order in orders:
            audit_actor(
                actor,
                action="order.assign",
                targets=[order],
                details={
                    "from": order.assignee_id,
                    "to": assignee_id,
                    "to_username": assignee.get_username() if assignee is not None else "",
                },
            )
    return len(orders)
