"""Reconciliation: ask D1 for an order's truth, fold it in like a webhook, and find who needs it.

- `order_reconcile` calls productionStatus for one order and feeds the answer through
  `ingest_operations` (source on_demand), so dedup, ranking and flags are those of webhooks;
  it records a ReconcileAttempt and backs off per order when D1 keeps saying the same.
- `orders_due_for_reconcile` says which orders need the truth now; `reconcile_sweep` claims
  them in batches (SKIP LOCKED on PostgreSQL, a conditional-update lease elsewhere), so that
  two sweeps never queue the same order, and queues one task per order after commit.
- `events_apply_pending` is the safety net that re-applies stored events never applied.

The D1 call never runs inside a transaction: no row lock is held while D1 is slow.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from tracking.d1.client import D1CardNotFoundError, D1Error, d1_api_client_for
from tracking.domain import conditions
from tracking.domain.flags import ReconcileReason
from tracking.domain.order_state import STATE_COLUMNS
from tracking.domain.statuses import AWAITING_DELIVERY_STATUS, CANCELLED_STATUSES
from tracking.intake.card_operations import UNKNOWN_AT_D1
from tracking.intake.ingest import (
    card_orders_lock,
    ingest_operations,
    ingest_prepare,
    refresh_orders,
)
from tracking.models import (
    CardOrder,
    EventSource,
    Issuer,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
    ReconcileOutcome,
    ReconcileTrigger,
)
from tracking.observability.logs import request_id_current
from tracking.outbound.outbox import events_record, facts_before
from tracking.selectors import order_queues
from tracking.services.audit import Actor, audit_actor
from tracking.services.d1_asks import d1_ask_allow

logger = logging.getLogger(__name__)

SKIPPED = "skipped"


@dataclass(frozen=True)
class ReconcileResult:
    """What one `order_reconcile` call did; `outcome` is a ReconcileOutcome or "skipped"."""

    order_id: int
    outcome: str
    attempt_id: int | None = None
    http_status: int | None = None
    error: str = ""


@dataclass
class SweepResult:
    """The orders one sweep claimed (and queued, unless it ran them itself)."""

    order_ids: list[int] = field(default_factory=list)
    results: list[ReconcileResult] = field(default_factory=list)


# ---------------------------------------------------------------------------- D1 client


# ---------------------------------------------------------------------------- one order


def order_reconcile(
    *,
    order_id: int,
    trigger: str = ReconcileTrigger.SWEEP,
    user_id: int | None = None,
    unless_reconciled_since: datetime | None = None,
) -> ReconcileResult:
    """Ask D1 for the order's latest state and fold the answer in as on-demand events.

    Writes a NotificationDelivery (source on_demand) and events through `ingest_operations`
    when D1 answers, then one ReconcileAttempt, and the order's bookkeeping: clears
    `needs_reconcile` once D1 has answered, sets `reconcile_next_at` (exponential backoff while
    D1 says the same, fails or does not know the card) and releases the sweep's claim.
    Skips (records nothing) when the order is gone or was reconciled after
    `unless_reconciled_since`, so a redelivered or doubly queued task costs no D1 call, and a
    sweep skips an order superseded since it was claimed.
    Raises only database errors; every D1 failure becomes an attempt with outcome `error`.
    """
    order = CardOrder.objects.select_related("issuer").filter(pk=order_id).first()
    if order is None:
        return ReconcileResult(order_id=order_id, outcome=SKIPPED, error="no such order")
    if (
        unless_reconciled_since is not None
        and order.last_reconciled_at is not None
        and order.last_reconciled_at >= unless_reconciled_since
    ):
        CardOrder.objects.filter(pk=order_id).update(reconcile_claimed_until=None)
        return ReconcileResult(order_id=order_id, outcome=SKIPPED, error="reconciled meanwhile")
    if trigger == ReconcileTrigger.SWEEP and order.superseded_by_id:
        # Claimed before its card's newer operation superseded it: that one is followed now.
        CardOrder.objects.filter(pk=order_id).update(reconcile_claimed_until=None)
        return ReconcileResult(order_id=order_id, outcome=SKIPPED, error="superseded")

    issuer = order.issuer
    reason = order_due_reason(order=order, now=timezone.now())
    # The request or task that caused this call lends its id, so one id follows it to D1.
    correlation_id = request_id_current() or uuid.uuid4().hex
    started_at = timezone.now()
    started = time.monotonic()
    operations: list[dict[str, Any]] | None = None
    http_status: int | None = None
    error = ""
    try:
        operations = d1_api_client_for(issuer).get_production_status(
            order.card_id, correlation_id=correlation_id
        )
        http_status = 200
        outcome = ReconcileOutcome.UNCHANGED
    except D1CardNotFoundError as exc:
        http_status, error, outcome = exc.status, _error_text(exc), ReconcileOutcome.NOT_FOUND
    except D1Error as exc:
        http_status, error, outcome = exc.status, _error_text(exc), ReconcileOutcome.ERROR
    latency_ms = round((time.monotonic() - started) * 1000)

    with transaction.atomic():
        # Only the rows of the order's card are locked (no join), so reconciles of one issuer
        # run side by side; all of them, in ingest's lock order, since D1's answer may hold
        # the card's other operations too.
        card_orders_lock(issuer=issuer, card_ids=[order.card_id])
        order = CardOrder.objects.select_for_update().get(pk=order_id)
        # Superseded while D1 was asked (the card's newer operation spoke meanwhile): D1 answers
        # about the card's newest operation, so the call is that order's attempt, and the
        # superseded one is swept no more.
        attempt_order = order
        if trigger == ReconcileTrigger.SWEEP and order.superseded_by_id:
            attempt_order = CardOrder.objects.get(pk=order.superseded_by_id)
        before = _state_of(attempt_order)
        status_before = attempt_order.production_status
        delivery = None
        if operations is not None:
            delivery = _on_demand_ingest(
                issuer=issuer, operations=operations, correlation_id=correlation_id
            )
            _answer_record(issuer=issuer, card_id=order.card_id, operations=operations)
            order.refresh_from_db()
            if attempt_order is not order:
                attempt_order.refresh_from_db()
            if _state_of(attempt_order) != before:
                outcome = ReconcileOutcome.CHANGED
        now = timezone.now()
        _bookkeeping_update(order, outcome=outcome, now=now)
        _not_found_update(order, outcome=outcome, now=now)
        attempt = ReconcileAttempt.objects.create(
            order=attempt_order,
            started_at=started_at,
            trigger=trigger,
            reason=reason,
            requested_by_id=user_id,
            correlation_id=correlation_id,
            http_status=http_status,
            latency_ms=latency_ms,
            outcome=outcome,
            error=error,
            items_received=len(operations or []),
            status_before=status_before,
            status_after=attempt_order.production_status,
            answer=answer_summary(operations, operation_id=attempt_order.operation_id),
            delivery=delivery,
        )
    logger.info(
        "reconciled order=%s card=%s outcome=%s http_status=%s latency_ms=%s correlation=%s",
        order.pk,
        order.card_id,
        outcome,
        http_status,
        latency_ms,
        correlation_id,
    )
    return ReconcileResult(
        order_id=order.pk,
        outcome=outcome,
        attempt_id=attempt.pk,
        http_status=http_status,
        error=error,
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
    details = item.get("details") if isinstance(item.get("details"), dict) else {}
    summary = {
        "operationStatus": item.get("status"),
        "productionStatus": details.get("status"),
        "errorCode": item.get("errorCode"),
        "error": item.get("error"),
        "reason": details.get("reason"),
        "shipment": details.get("shipment") if isinstance(details.get("shipment"), dict) else None,
    }
    return {key: value for key, value in summary.items() if value not in (None, "", {})}


def _error_text(exc: D1Error) -> str:
    text = str(exc)
    if exc.body:
        text = f"{text}: {exc.body}"
    return text[:2000]


def _state_of(order: CardOrder) -> tuple:
    return tuple(getattr(order, name) for name in STATE_COLUMNS)


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
    delivery.new_count = result.new_count
    delivery.duplicate_count = result.duplicate_count
    delivery.rejected_count = result.rejected_count
    if result.errors:
        delivery.error = "; ".join(result.errors)[:2000]
    delivery.save(update_fields=["new_count", "duplicate_count", "rejected_count", "error"])
    return delivery


def _answer_record(*, issuer: Issuer, card_id: str, operations: Sequence[Any]) -> None:
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
    if _awaits_delivery(order):
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


def _not_found_update(order: CardOrder, *, outcome: str, now: datetime) -> None:
    """A registered order D1 keeps not knowing becomes an exception after a while.

    D1 answering 404 for a card it never spoke about is expected for a short time (the order is
    being loaded); past REGISTERED_NOT_FOUND_AFTER it is an exception ("unknown at D1"). Any
    answer clears it.
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


def reconcile_backoff(*, attempts: int) -> timedelta:
    """The wait after `attempts` attempts in a row that changed nothing: base * 2^(n-1), capped."""
    if attempts <= 0:
        return timedelta(0)
    base: timedelta = settings.RECONCILE_BACKOFF_BASE
    cap: timedelta = settings.RECONCILE_BACKOFF_CAP
    # Bounded exponent: 2**40 base-periods is past any sensible cap and never overflows.
    return min(cap, base * (2 ** min(attempts - 1, 40)))


def _awaits_delivery(order: CardOrder) -> bool:
    return (
        order.production_status == AWAITING_DELIVERY_STATUS
        and bool(order.shipment)
        and not order.shipment_final
    )


# ---------------------------------------------------------------------------- who is due


def _stage_stale_q(now: datetime) -> Q:
    """Stuck orders (the Stuck queue's rule), and open orders without a stage of the path.

    An order held on an unknown code, or known only by unknown codes (no stage yet), waits the
    default threshold too: D1 is asked about it like any other.
    """
    default: timedelta = settings.RECONCILE_DEFAULT_STAGE_THRESHOLD
    unranked = ~Q(production_status__in=list(order_queues.stage_thresholds())) & Q(
        stage_entered_at__lte=now - default
    )
    no_stage = Q(stage_entered_at__isnull=True, last_event_at__lte=now - default)
    return order_queues.stuck_q(now=now) | (Q(is_terminal=False) & (unranked | no_stage))


def _past_due_q(now: datetime) -> Q:
    """Orders not shipped (nor failed) by their dueDate plus the grace period."""
    cutoff = (now - settings.RECONCILE_DUE_DATE_GRACE).date()
    return Q(is_terminal=False, due_date__lt=cutoff)


def _awaiting_delivery_q(now: datetime, *, max_age: timedelta | None) -> Q:
    """Shipped orders whose carrier has not reported delivery, quiet for the shipped interval."""
    # Carrier tracking only exists for a shipped card; a returned one expects nothing more.
    awaiting = conditions.awaiting_delivery_q() & Q(shipment__isnull=False)
    quiet = Q(last_event_at__lte=now - settings.RECONCILE_SHIPPED_INTERVAL)
    if max_age is None:
        return awaiting
    return awaiting & quiet & Q(stage_entered_at__gte=now - max_age)


def _ready_q(now: datetime) -> Q:
    return Q(reconcile_next_at__isnull=True) | Q(reconcile_next_at__lte=now)


def _unclaimed_q(now: datetime) -> Q:
    return Q(reconcile_claimed_until__isnull=True) | Q(reconcile_claimed_until__lte=now)


def _active_issuers_q() -> Q:
    # A subquery rather than a join, so that SELECT ... FOR UPDATE locks card orders only.
    return Q(issuer__in=Issuer.objects.filter(is_active=True).values("pk"))


def orders_due_for_reconcile(
    *, now: datetime | None = None, silent: bool | None = None
) -> QuerySet[CardOrder]:
    """Orders the sweep would pick now, flagged ones first.

    Due: flagged by ingest (gap, unknown status, conflict); non-terminal and in their stage
    longer than RECONCILE_STAGE_THRESHOLDS says; past dueDate + RECONCILE_DUE_DATE_GRACE and not
    shipped; or shipped, carrier not final, quiet for RECONCILE_SHIPPED_INTERVAL and shipped less
    than RECONCILE_SHIPPED_MAX_AGE ago; registered and silent; an accepted CANCEL not confirmed.
    In every case not backing off, not claimed and not superseded. `silent` True gives only the
    silent registered orders (oldest registration first, on their own partial index), False
    leaves them out; the sweep asks the two apart, so a million silent orders never make it sort
    the whole table.
    """
    now = now or timezone.now()
    eligible = (
        _ready_q(now) & _unclaimed_q(now) & _active_issuers_q() & Q(superseded_by__isnull=True)
    )
    if silent:
        return CardOrder.objects.filter(order_queues.silent_q(now=now) & eligible).order_by(
            "registered_at", "id"
        )
    due = (
        Q(needs_reconcile=True)
        | _stage_stale_q(now)
        | _past_due_q(now)
        | _awaiting_delivery_q(now, max_age=settings.RECONCILE_SHIPPED_MAX_AGE)
        | conditions.cancel_unconfirmed_q()
    )
    if silent is None:
        due |= order_queues.silent_q(now=now)
    # A superseded order is not swept: its card's newer operation is the one followed.
    return CardOrder.objects.filter(due & eligible).order_by("-needs_reconcile", "id")


def orders_open_for_reconcile() -> QuerySet[CardOrder]:
    """Every order not in a final state: non-terminal, or shipped and still awaiting delivery."""
    return CardOrder.objects.filter(
        (Q(is_terminal=False) | _awaiting_delivery_q(timezone.now(), max_age=None))
        & _active_issuers_q()
        & Q(superseded_by__isnull=True)
    ).order_by("id")


def order_due_reason(*, order: CardOrder, now: datetime) -> str:
    """The reason an order is (or would be) due, for the attempt's record; "" when none."""
    if order.needs_reconcile and order.reconcile_reason:
        return order.reconcile_reason
    if order.registered_at is not None and not order.event_count:
        return ReconcileReason.SILENT
    if order.cancel_accepted_at is not None and order.production_status not in CANCELLED_STATUSES:
        return ReconcileReason.CANCEL_UNCONFIRMED
    if not order.is_terminal:
        if order.due_date is not None and order.due_date < (
            (now - settings.RECONCILE_DUE_DATE_GRACE).date()
        ):
            return ReconcileReason.PAST_DUE
        limit = order_queues.stage_threshold(order.production_status)
        entered = order.stage_entered_at or order.last_event_at
        if entered is not None and entered <= now - limit:
            return ReconcileReason.STAGE_THRESHOLD
    if _awaits_delivery(order):
        return ReconcileReason.AWAITING_DELIVERY
    return ""


# ---------------------------------------------------------------------------- the sweep


def orders_claim_for_reconcile(*, limit: int, now: datetime | None = None) -> list[int]:
    """Claim up to `limit` due orders for RECONCILE_CLAIM_SECONDS and return their ids.

    Two sweeps running at once never claim the same order: on PostgreSQL the rows are read with
    FOR UPDATE SKIP LOCKED; elsewhere each claim is a conditional UPDATE that only succeeds on
    an unclaimed row. Runs in its own transaction (or the caller's).
    """
    now = now or timezone.now()
    claimed: list[int] = []
    # Orders D1 has spoken about first, then silent registered ones, each on its own indexes.
    for silent in (False, True):
        if len(claimed) < limit:
            due = orders_due_for_reconcile(now=now, silent=silent)
            claimed += _claim(due, limit=limit - len(claimed), now=now)
    return claimed


def _claim(due: QuerySet[CardOrder], *, limit: int, now: datetime) -> list[int]:
    until = now + timedelta(seconds=settings.RECONCILE_CLAIM_SECONDS)
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            order_ids = list(
                due.select_for_update(skip_locked=True, of=("self",)).values_list("id", flat=True)[
                    :limit
                ]
            )
            CardOrder.objects.filter(id__in=order_ids).update(reconcile_claimed_until=until)
            return order_ids
        claimed = []
        for order_id in list(due.values_list("id", flat=True)[:limit]):
            if CardOrder.objects.filter(_unclaimed_q(now), id=order_id).update(
                reconcile_claimed_until=until
            ):
                claimed.append(order_id)
        return claimed


def reconcile_sweep(
    *,
    max_orders: int | None = None,
    batch_size: int | None = None,
    inline: bool = False,
    trigger: str = ReconcileTrigger.SWEEP,
    actor: Actor | None = None,
) -> SweepResult:
    """Claim due orders batch by batch and queue a reconcile task for each after commit.

    With `inline` the orders are reconciled in this process instead (the command's --inline).
    Safe to run from two beats at once: claims keep the sweeps apart. With an `actor` (a person
    or a command asked, not the beat), each claimed order gets an `order.reconcile` entry.
    """
    from tracking.tasks import reconcile_order_task

    max_orders = settings.RECONCILE_SWEEP_MAX_ORDERS if max_orders is None else max_orders
    batch_size = batch_size or settings.RECONCILE_SWEEP_BATCH
    result = SweepResult()
    while len(result.order_ids) < max_orders:
        with transaction.atomic():
            claimed_at = timezone.now()
            order_ids = orders_claim_for_reconcile(
                limit=min(batch_size, max_orders - len(result.order_ids)), now=claimed_at
            )
            if actor is not None:
                audit_actor(
                    actor,
                    action="order.reconcile",
                    targets=CardOrder.objects.filter(pk__in=order_ids).order_by("pk"),
                    details={"trigger": trigger},
                )
            if not inline:
                for order_id in order_ids:
                    reconcile_order_task.delay_on_commit(
                        order_id, enqueued_at=claimed_at.isoformat(), trigger=trigger
                    )
        result.order_ids += order_ids
        if inline:
            result.results += [
                order_reconcile(order_id=order_id, trigger=trigger) for order_id in order_ids
            ]
        if len(order_ids) < batch_size:
            break
    if result.order_ids:
        logger.info("reconcile sweep claimed %d orders", len(result.order_ids))
    return result


def orders_reconcile_now(
    *,
    order_ids: Iterable[int],
    actor: Actor,
    inline: bool = False,
    trigger: str = ReconcileTrigger.STAFF,
) -> list[ReconcileResult]:
    """Reconcile the given orders now, whatever their backoff: queued, or here with `inline`.

    Counts the asks against the actor's and the issuers' rate limits first (`d1_ask_allow`,
    raises D1AskRefused; commands are not counted); "Ask D1 now" on many orders is a job
    instead (`tracking.services.d1_asks`). Writes one `order.reconcile` audit entry per order
    for `actor`, in its own transaction. Queued tasks are published once it commits and go
    through the same rate limit as the sweep's; returns the results when inline, else an empty list.
    """
    from tracking.tasks import reconcile_order_task

    user_id = actor.user_id
    order_ids = list(order_ids)
    d1_ask_allow(
        actor=actor,
        issuer_ids=CardOrder.objects.filter(pk__in=order_ids)
        .values_list("issuer__issuer_id", flat=True)
        .distinct(),
        asks=len(order_ids),
    )
    with transaction.atomic():
        audit_actor(
            actor,
            action="order.reconcile",
            targets=CardOrder.objects.filter(pk__in=order_ids).order_by("pk"),
            details={"trigger": trigger},
        )
        if not inline:
            enqueued_at = timezone.now().isoformat()
            for order_id in order_ids:
                reconcile_order_task.delay_on_commit(
                    order_id, enqueued_at=enqueued_at, trigger=trigger, user_id=user_id
                )
    if inline:
        return [
            order_reconcile(order_id=order_id, trigger=trigger, user_id=user_id)
            for order_id in order_ids
        ]
    return []


# ---------------------------------------------------------------------------- safety net


def events_apply_pending(*, older_than: timedelta | None = None, limit: int = 500) -> int:
    """Re-derive the orders of events stored but never applied; returns how many orders.

    Such events exist only after a crash between storing and applying; the orders are locked
    in the same order ingest locks them, so a concurrent delivery waits instead of deadlocking.
    """
    older_than = settings.RECONCILE_PENDING_EVENTS_AGE if older_than is None else older_than
    cutoff = timezone.now() - older_than
    order_ids = list(
        OperationEvent.objects.filter(
            applied_at__isnull=True, order__isnull=False, first_received_at__lte=cutoff
        )
        .values_list("order_id", flat=True)
        .distinct()[:limit]
    )
    if not order_ids:
        return 0
    with transaction.atomic():
        orders = list(
            CardOrder.objects.select_for_update()
            .filter(pk__in=order_ids)
            .order_by("issuer_id", "card_id", "operation_id")
        )
        refresh_orders(orders)
    logger.warning("re-applied pending events of %d orders", len(orders))
    return len(orders)
