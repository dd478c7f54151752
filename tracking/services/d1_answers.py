"""D1's on-demand answers: apply one like a webhook, and record the attempt that asked for it.

Reconcile (one order, the sweep, "Ask D1 now" jobs) and look-up (any card) take the same two
steps after `tracking.d1.asking.production_status_ask`:

- `answer_apply` locks the card's orders, keeps the answer as an on-demand NotificationDelivery,
  ingests its items through `ingest_operations` (so dedup, ranking and flags are those of
  webhooks) and remembers it on the card's orders as D1's current truth;
- `attempt_record` writes the order's bookkeeping (the reconcile flag, backoff, the claim,
  "unknown at D1") and one ReconcileAttempt saying what was asked and what it did.

Both run inside the caller's transaction, after the D1 call: no row lock is held while D1 is slow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from tracking.d1.asking import D1Answer
from tracking.domain.d1_items import details_of
from tracking.domain.order_state import STATE_COLUMNS
from tracking.domain.statuses import AWAITING_DELIVERY_STATUS
from tracking.intake.card_operations import UNKNOWN_AT_D1
from tracking.intake.ingest import (
    delivery_counts_set,
    ingest_operations,
    ingest_prepare,
    refresh_orders,
)
from tracking.intake.locking import card_orders_lock
from tracking.models import (
    CardOrder,
    EventSource,
    Issuer,
    NotificationDelivery,
    ReconcileAttempt,
    ReconcileOutcome,
)
from tracking.outbound.outbox import events_record, facts_before


@dataclass
class AppliedAnswer:
    """What applying one answer did: its delivery, and the card's orders as they were before."""

    answer: D1Answer
    delivery: NotificationDelivery | None = None
    # Every order of the card, read under its lock before the answer was applied, by pk.
    orders_before: dict[int, CardOrder] = field(default_factory=dict)

    def outcome_of(self, order: CardOrder) -> str:
        """The attempt's outcome for `order` (read again since): changed when D1's answer
        created it or changed its state, else the answer's own (unchanged, not_found, error)."""
        if not self.answer.answered:
            return self.answer.outcome
        before = self.orders_before.get(order.pk)
        if before is None or order_state(before) != order_state(order):
            return ReconcileOutcome.CHANGED
        return ReconcileOutcome.UNCHANGED

    def status_before(self, order: CardOrder) -> str:
        """The order's production status before the answer; "" for an order it created."""
        before = self.orders_before.get(order.pk)
        return before.production_status if before is not None else ""


def answer_apply(*, issuer: Issuer, answer: D1Answer) -> AppliedAnswer:
    """Lock the card's orders, then fold D1's answer in as on-demand events; in a transaction.

    Only the rows of the card are locked (no join), in ingest's lock order, so asks about other
    cards of the issuer run side by side. When D1 answered, writes a NotificationDelivery (source
    on_demand), its events (creating an order for an operation the portal did not know) and
    the card's `d1_answer`; when it did not, writes nothing.
    """
    card_orders_lock(issuer=issuer, card_ids=[answer.card_id])
    applied = AppliedAnswer(
        answer=answer,
        orders_before={
            order.pk: order
            for order in CardOrder.objects.filter(issuer=issuer, card_id=answer.card_id)
        },
    )
    if answer.answered:
        applied.delivery = _on_demand_ingest(
            issuer=issuer, operations=answer.items, correlation_id=answer.correlation_id
        )
        _answer_remember(issuer=issuer, card_id=answer.card_id, operations=answer.items)
    return applied


def attempt_record(
    *,
    asked: CardOrder,
    attempt_order: CardOrder,
    applied: AppliedAnswer,
    trigger: str,
    reason: str,
    user_id: int | None,
) -> ReconcileAttempt:
    """Write `asked`'s bookkeeping and the ReconcileAttempt on `attempt_order`; in a transaction.

    `asked` is the order D1 was asked about, locked and read again since the answer was applied;
    `attempt_order` is the one the call is recorded on (the same, or the order that superseded
    it meanwhile). The outcome is `applied.outcome_of(attempt_order)`.
    """
    answer = applied.answer
    outcome = applied.outcome_of(attempt_order)
    now = timezone.now()
    _bookkeeping_update(asked, outcome=outcome, now=now)
    order_not_found_update(asked, outcome=outcome, now=now)
    return ReconcileAttempt.objects.create(
        order=attempt_order,
        started_at=answer.started_at,
        trigger=trigger,
        reason=reason,
        requested_by_id=user_id,
        correlation_id=answer.correlation_id,
        http_status=answer.http_status,
        latency_ms=answer.latency_ms,
        outcome=outcome,
        error=answer.error,
        items_received=len(answer.items),
        status_before=applied.status_before(attempt_order),
        status_after=attempt_order.production_status,
        answer=answer_summary(answer.operations, operation_id=attempt_order.operation_id),
        delivery=applied.delivery,
    )


def answer_summary(operations: Sequence[Any] | None, *, operation_id: str) -> dict[str, Any]:
    """What D1 said about this order in a productionStatus answer, for the attempt's record.

    The item of the order's operation (else the last item): operation status, production
    status, error and shipment. Empty when D1 gave no answer.
    """
    items = [op for op in operations or [] if isinstance(op, dict)]
    if not items:
        return {}
    item = next((op for op in items if op.get("operationId") == operation_id), items[-1])
    details = details_of(item)
    summary = {
        "operationStatus": item.get("status"),
        "productionStatus": details.get("status"),
        "errorCode": item.get("errorCode"),
        "error": item.get("error"),
        "reason": details.get("reason"),
        "shipment": details.get("shipment") if isinstance(details.get("shipment"), dict) else None,
    }
    return {key: value for key, value in summary.items() if value not in (None, "", {})}


def order_state(order: CardOrder) -> tuple:
    """The columns an answer can change; two equal states mean D1 said the same."""
    return tuple(getattr(order, name) for name in STATE_COLUMNS)


def order_awaits_delivery(order: CardOrder) -> bool:
    """Shipped, with a shipment whose carrier has not said its final word."""
    return (
        order.production_status == AWAITING_DELIVERY_STATUS
        and bool(order.shipment)
        and not order.shipment_final
    )


def reconcile_backoff(*, attempts: int) -> timedelta:
    """The wait after `attempts` attempts in a row that changed nothing: base * 2^(n-1), capped."""
    if attempts <= 0:
        return timedelta(0)
    base: timedelta = settings.RECONCILE_BACKOFF_BASE
    cap: timedelta = settings.RECONCILE_BACKOFF_CAP
    # Bounded exponent: 2**40 base-periods is past any sensible cap and never overflows.
    return min(cap, base * (2 ** min(attempts - 1, 40)))


def order_not_found_update(order: CardOrder, *, outcome: str, now: datetime) -> None:
    """A registered order D1 keeps not knowing becomes an exception after a while.

    D1 answering 404 for a card it never spoke about is expected for a short time (the order is
    being loaded); past REGISTERED_NOT_FOUND_AFTER it is an exception ("unknown at D1"). Any
    answer clears it. Writes the order and, when its facts change, an outbound event.
    """
    if outcome == ReconcileOutcome.NOT_FOUND and not order.event_count:
        since = order.d1_not_found_since or now
        reason = order.exception_reason
        if now - since >= settings.REGISTERED_NOT_FOUND_AFTER:
            reason = UNKNOWN_AT_D1
        fields = {"d1_not_found_since": since, "exception_reason": reason}
    elif outcome in (ReconcileOutcome.CHANGED, ReconcileOutcome.UNCHANGED):
        fields = {"d1_not_found_since": None}
        if order.exception_reason == UNKNOWN_AT_D1:
            fields["exception_reason"] = ""
    else:
        return
    if any(getattr(order, name) != value for name, value in fields.items()):
        before = facts_before([order])
        for name, value in fields.items():
            setattr(order, name, value)
        order.save(update_fields=list(fields))
        events_record([order], before=before, now=now)


def _on_demand_ingest(
    *, issuer: Issuer, operations: Sequence[Any], correlation_id: str
) -> NotificationDelivery:
    """Store D1's answer like a delivery, so the timeline shows where each item came from."""
    delivery = NotificationDelivery.objects.create(
        issuer=issuer,
        issuer_id_in_path=issuer.issuer_id,
        source=EventSource.ON_DEMAND,
        correlation_id=correlation_id,
        content_type="application/json",
        byte_size=len(json.dumps({"operations": list(operations)}).encode()),
        item_count=len(operations),
        status_code=200,
    )
    result = ingest_operations(
        issuer=issuer, operations=operations, source=EventSource.ON_DEMAND, delivery=delivery
    )
    delivery_counts_set(delivery, result)
    if result.errors:
        delivery.error = "; ".join(result.errors)[:2000]
    delivery.save(update_fields=["new_count", "duplicate_count", "rejected_count", "error"])
    return delivery


def _answer_remember(*, issuer: Issuer, card_id: str, operations: Sequence[Any]) -> None:
    """D1's on-demand answer is its current truth: the card's orders remember it and are folded
    again, so that the holds and unknown codes it no longer holds close.

    Writes `d1_answer` (when, and the fingerprints of the items it held) on every order of the
    card that has events, then the derived state of those with an open unknown code (the only
    thing the answer can end). Needed also when the answer only repeated stored items, which
    ingest counts without folding. The caller holds the card's locks.
    """
    now = timezone.now()
    answer = {"at": now.isoformat(), "fingerprints": sorted(ingest_prepare(operations).items)}
    card_orders = CardOrder.objects.filter(issuer=issuer, card_id=card_id, event_count__gt=0)
    card_orders.update(d1_answer=answer)
    held = list(card_orders.filter(has_unknown_status=True).select_related("issuer").order_by("pk"))
    if held:
        refresh_orders(held, now=now)


def _bookkeeping_update(order: CardOrder, *, outcome: str, now: datetime) -> None:
    """Clear the flag once D1 has answered; set the next attempt; release the claim."""
    if outcome in (ReconcileOutcome.CHANGED, ReconcileOutcome.UNCHANGED):
        order.needs_reconcile = False
        order.reconcile_reason = ""
    # `reconcile_attempts` counts attempts in a row that changed nothing; anything new since
    # the last attempt (a webhook) starts the count again.
    something_new = (
        order.last_event_at is not None
        and order.last_reconciled_at is not None
        and order.last_event_at > order.last_reconciled_at
    )
    if outcome == ReconcileOutcome.CHANGED or something_new:
        order.reconcile_attempts = 0
    if outcome != ReconcileOutcome.CHANGED:
        order.reconcile_attempts += 1
    delay = reconcile_backoff(attempts=order.reconcile_attempts)
    if order_awaits_delivery(order):
        delay = max(delay, settings.RECONCILE_SHIPPED_INTERVAL)
    order.reconcile_next_at = now + delay if delay else None
    order.reconcile_claimed_until = None
    order.last_reconciled_at = now
    order.last_reconcile_outcome = outcome
    order.save(
        update_fields=[
            "needs_reconcile",
            "reconcile_reason",
            "reconcile_attempts",
            "reconcile_next_at",
            "reconcile_claimed_until",
            "last_reconciled_at",
            "last_reconcile_outcome",
        ]
    )
