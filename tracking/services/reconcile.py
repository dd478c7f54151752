"""Reconciliation: ask D1 for an order's truth, fold it in like a webhook, and find who needs it.

- `order_reconcile` asks productionStatus for one order (`tracking.d1.asking`) and applies the
  answer and records the attempt as every on-demand ask does (`tracking.services.d1_answers`),
  backing off per order when D1 keeps saying the same.
- `orders_due_for_reconcile` says which orders need the truth now; `reconcile_sweep` claims
  them in batches (SKIP LOCKED on PostgreSQL, a conditional-update lease elsewhere), so that
  two sweeps never queue the same order, and queues one task per order after commit.
- The Celery tasks that run them (one order, the beat's sweep) are at the end, with the
  projector's sweep under its former name (`tracking.apply_pending_events`).

The D1 call never runs inside a transaction: no row lock is held while D1 is slow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from tracking.d1.asking import production_status_ask
from tracking.domain import conditions, stage_limits
from tracking.domain.flags import ReconcileReason
from tracking.domain.statuses import CANCELLED_STATUSES
from tracking.infrastructure.request_ids import request_id_current
from tracking.intake.locking import orders_locked
from tracking.intake.projector import fold_pending
from tracking.models import CardOrder, Issuer, ReconcileTrigger
from tracking.selectors import order_queues
from tracking.services.audit import Actor, audit_actor
from tracking.services.d1_answers import (
    answer_apply,
    attempt_record,
    order_awaits_delivery,
)
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


# ---------------------------------------------------------------------------- one order


def order_reconcile(
    *,
    order_id: int,
    trigger: str = ReconcileTrigger.SWEEP,
    user_id: int | None = None,
    unless_reconciled_since: datetime | None = None,
) -> ReconcileResult:
    """Ask D1 for the order's latest state and fold the answer in as on-demand events.

    Writes a NotificationDelivery (source on_demand) and events through `answer_apply` when D1
    answers, then the order's bookkeeping and one ReconcileAttempt (`attempt_record`): clears
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
    answer = production_status_ask(
        issuer=issuer, card_id=order.card_id, correlation_id=request_id_current()
    )
    with transaction.atomic():
        applied = answer_apply(issuer=issuer, answer=answer)
        order = orders_locked(CardOrder.objects.filter(pk=order_id)).get()
        # Superseded while D1 was asked (the card's newer operation spoke meanwhile): D1 answers
        # about the card's newest operation, so the call is that order's attempt, and the
        # superseded one is swept no more.
        attempt_order = order
        superseded_by_id = applied.orders_before[order.pk].superseded_by_id
        if trigger == ReconcileTrigger.SWEEP and superseded_by_id:
            attempt_order = CardOrder.objects.get(pk=superseded_by_id)
        attempt = attempt_record(
            asked=order,
            attempt_order=attempt_order,
            applied=applied,
            trigger=trigger,
            reason=reason,
            user_id=user_id,
        )
    logger.info(
        "reconciled order=%s card=%s outcome=%s http_status=%s latency_ms=%s correlation=%s",
        order.pk,
        order.card_id,
        attempt.outcome,
        answer.http_status,
        answer.latency_ms,
        answer.correlation_id,
    )
    return ReconcileResult(
        order_id=order.pk,
        outcome=attempt.outcome,
        attempt_id=attempt.pk,
        http_status=answer.http_status,
        error=answer.error,
    )


# ---------------------------------------------------------------------------- who is due


def _stage_stale_q(now: datetime) -> Q:
    """Stuck orders (the Stuck queue's rule), and open orders without a stage of the path.

    An order held on an unknown code, or known only by unknown codes (no stage yet), waits the
    default threshold too: D1 is asked about it like any other.
    """
    default: timedelta = settings.RECONCILE_DEFAULT_STAGE_THRESHOLD
    unranked = ~Q(production_status__in=list(stage_limits.stage_thresholds())) & Q(
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
        limit = stage_limits.stage_threshold(order.production_status)
        entered = order.stage_entered_at or order.last_event_at
        if entered is not None and entered <= now - limit:
            return ReconcileReason.STAGE_THRESHOLD
    if order_awaits_delivery(order):
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
    instead (`tracking.services.d1_ask_jobs`). Writes one `order.reconcile` audit entry per order
    for `actor`, in its own transaction. Queued tasks are published once it commits and go
    through the same rate limit as the sweep's; returns the results when inline, else an empty list.
    """
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


# ---------------------------------------------------------------------------- Celery tasks
# Thin callers of the services above, idempotent and safe to run twice. The names are those the
# beat schedule and messages already queued use.


@shared_task(name="tracking.reconcile_order", rate_limit=settings.RECONCILE_TASK_RATE_LIMIT)
def reconcile_order_task(
    order_id: int,
    enqueued_at: str | None = None,
    trigger: str = ReconcileTrigger.SWEEP,
    user_id: int | None = None,
) -> str:
    """Reconcile one order; a copy of the task that runs after another did nothing."""
    result = order_reconcile(
        order_id=order_id,
        trigger=trigger,
        user_id=user_id,
        unless_reconciled_since=datetime.fromisoformat(enqueued_at) if enqueued_at else None,
    )
    return result.outcome


@shared_task(name="tracking.reconcile_sweep")
def reconcile_sweep_task() -> int:
    """Claim the orders that are due and queue one reconcile task for each."""
    return len(reconcile_sweep().order_ids)


@shared_task(name="tracking.apply_pending_events")
def apply_pending_events_task() -> int:
    """The projector's sweep under its former name, for messages and schedules that still use it.

    Stored events wait to be folded by design now: the projector folds them
    (`tracking.intake.projector`, its own sweep `tracking.intake.fold_pending`).
    """
    return fold_pending().orders
