"""Look any card up at D1: productionStatus for an issuer and a cardId, whether known or not.

The admin's "Look up at D1" and `manage.py reconcile --card ISSUER/CARD` call `card_look_up`:
it asks D1 (`tracking.d1.asking`), applies the answer and records a reconcile attempt on the
order it lands on as reconcile does (`tracking.services.d1_answers`: ingest creates the order
when it is new, or joins a registered one), writes an audit entry, and says which order to open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from tracking.d1.asking import production_status_ask
from tracking.d1.client import CARD_ID_PATTERN
from tracking.domain.flags import ReconcileReason
from tracking.infrastructure.request_ids import request_id_current
from tracking.intake.locking import orders_locked
from tracking.models import CardOrder, Issuer, ReconcileTrigger
from tracking.services.audit import Actor, audit_actor
from tracking.services.d1_answers import answer_apply, attempt_record
from tracking.services.d1_asks import d1_ask_allow

logger = logging.getLogger(__name__)


@dataclass
class LookUpResult:
    """D1's answer about one card and what the portal did with it."""

    issuer_id: str
    card_id: str
    outcome: str  # a ReconcileOutcome
    http_status: int | None = None
    error: str = ""
    operations: list[dict[str, Any]] = field(default_factory=list)
    order_id: int | None = None
    created: bool = False
    correlation_id: str = ""


class LookUpInputError(ValueError):
    """The issuer or cardId cannot be asked about (named in the message)."""


def card_look_up(
    *,
    issuer_id: str,
    card_id: str,
    actor: Actor,
    trigger: str = ReconcileTrigger.STAFF,
) -> LookUpResult:
    """Ask D1 about `card_id` of `issuer_id` and fold the answer in; audited.

    Writes an on-demand NotificationDelivery and events (creating the order when D1 knows a new
    operation), a ReconcileAttempt on the order the answer lands on (or on the card's known
    order when D1 answers 404), and an AuditEntry `order.look_up`. The D1 call runs outside any
    transaction. Raises LookUpInputError for an unknown issuer or a malformed cardId, and
    D1AskRefused when the user or the issuer has asked D1 too often (`d1_ask_allow`); every D1
    failure is a result with outcome `error` or `not_found`.
    """
    issuer_id, card_id = issuer_id.strip(), card_id.strip()
    issuer = Issuer.objects.filter(issuer_id=issuer_id, is_active=True).first()
    if issuer is None:
        raise LookUpInputError(f"Unknown or inactive issuer {issuer_id!r}.")
    if not CARD_ID_PATTERN.match(card_id):
        raise LookUpInputError(
            f"{card_id!r} is not a D1 cardId (1 to 48 letters, digits, '-' or '_')."
        )
    d1_ask_allow(actor=actor, issuer_ids=[issuer_id])
    answer = production_status_ask(
        issuer=issuer, card_id=card_id, correlation_id=request_id_current()
    )
    result = LookUpResult(
        issuer_id=issuer_id,
        card_id=card_id,
        outcome=answer.outcome,
        http_status=answer.http_status,
        error=answer.error,
        operations=answer.items,
        correlation_id=answer.correlation_id,
    )
    with transaction.atomic():
        applied = answer_apply(issuer=issuer, answer=answer)
        order = _answered_order(issuer=issuer, card_id=card_id, operations=answer.items)
        if order is not None:
            order = orders_locked(CardOrder.objects.filter(pk=order.pk)).get()
            attempt = attempt_record(
                asked=order,
                attempt_order=order,
                applied=applied,
                trigger=trigger,
                reason=ReconcileReason.LOOK_UP,
                user_id=actor.user_id,
            )
            result.order_id = order.pk
            result.created = order.pk not in applied.orders_before
            result.outcome = attempt.outcome
        audit_actor(
            actor,
            action="order.look_up",
            targets=[order],
            details={
                "issuer_id": issuer_id,
                "card_id": card_id,
                "http_status": result.http_status,
                "outcome": result.outcome,
                "created": result.created,
            },
        )
    logger.info(
        "looked up issuer=%s card=%s outcome=%s http_status=%s order=%s correlation=%s",
        issuer_id,
        card_id,
        result.outcome,
        result.http_status,
        result.order_id,
        result.correlation_id,
    )
    return result


def _answered_order(*, issuer: Issuer, card_id: str, operations) -> CardOrder | None:
    """The order D1's answer is about (its newest operation), else the card's newest order."""
    operation_ids = [
        o.get("operationId")
        for o in operations
        if isinstance(o, dict) and o.get("cardId") == card_id and o.get("operationId")
    ]
    orders = CardOrder.objects.filter(issuer=issuer, card_id=card_id)
    answered = list(orders.filter(operation_id__in=operation_ids))
    candidates = answered or list(orders)
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda o: (o.start_time is not None, o.start_time or o.created_at, o.pk),
    )
