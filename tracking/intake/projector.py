"""The projector: every order with unfolded events or uncounted copies, folded in sets.

The webhook stores (`tracking.intake.ingest.store`); the projector folds. First the waiting
copies (`EventCopy`) are counted into `times_received`, in a transaction that locks no order:
each row is deleted as it is counted, so a copy is counted once even when two projectors run.
As on the request before, a copy changes no order (nothing is folded for it). Then each set of up to
`INGEST_FOLD_BATCH` orders with waiting events is one transaction in the lock order of
`tracking.intake.locking`: the orders (skipping those another transaction holds: their holder
folds them, or the next set does), the other orders of cards whose order gets its first events
(for the card-level pass), then every locked order folded again from all its events
(`refresh_orders`, today's fold). A set that dies rolls back whole: nothing is lost and
nothing counted twice.

Woken at commit by the webhook (`projector_wake`), and swept by beat (`fold_pending_task`) for
anything a wake-up missed. `INGEST_FOLD` says how a wake-up runs: `celery` (a task, queued at
most once at a time), or `inline` (right after the request's commit, in the request, so that a
reader sees the state at the answer). Inline, a request folds only what it stored (its
`FoldScope`), waiting for an order another transaction holds rather than skipping it: a backlog
left by others is the sweep's, never one POST's.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tracking.infrastructure.metrics import fold_lag_observe
from tracking.intake.card_operations import cards_after_ingest
from tracking.intake.ingest.rederive import refresh_orders
from tracking.intake.locking import for_update_clause, orders_locked, transaction_required
from tracking.models import CardOrder, EventCopy, Issuer, OperationEvent

QUEUED_KEY = "intake:fold-queued"


@dataclass
class FoldReport:
    """What the projector did: orders folded, copies counted, and each order's fold lag."""

    orders: int = 0
    copies: int = 0
    rounds: int = 0
    lags: list[float] = field(default_factory=list)  # seconds from its oldest waiting arrival

    def add(self, other: FoldReport) -> None:
        self.orders += other.orders
        self.copies += other.copies
        self.rounds += other.rounds
        self.lags += other.lags


@dataclass(frozen=True)
class FoldScope:
    """What one delivery left waiting: its orders with new events and its copied events."""

    order_ids: frozenset[int] = frozenset()
    event_ids: frozenset[int] = frozenset()


def fold_pending(*, batch: int | None = None, max_rounds: int = 1000) -> FoldReport:
    """Count the waiting copies, then fold every order with waiting events, set by set.

    Each set is a transaction of its own. Stops when nothing waits, when a round finds only
    orders other transactions hold, or after `max_rounds`. Raises only database errors (the
    failed set is then rolled back whole, for the next run).
    """
    batch = batch or settings.INGEST_FOLD_BATCH
    report = FoldReport()
    for _ in range(max_rounds):
        with transaction.atomic():
            copies = copies_count(limit=batch * 20)
        with transaction.atomic():
            done = fold_round(batch=batch)
        done.copies += copies
        report.add(done)
        if not done.orders and not done.copies:
            break
    return _lags_observed(report)


def fold_scope(scope: FoldScope) -> FoldReport:
    """Fold what one delivery stored: its copies counted, its orders folded, in one set each.

    Orders another transaction holds are waited for (in the lock order, so no cycle), not
    skipped: when this returns, every order of the scope shows what the delivery brought.
    """
    report = FoldReport()
    if scope.event_ids:
        with transaction.atomic():
            report.copies = copies_count(limit=None, event_ids=sorted(scope.event_ids))
    if scope.order_ids:
        with transaction.atomic():
            report.add(fold_round(batch=len(scope.order_ids), order_ids=scope.order_ids))
    return _lags_observed(report)


def _lags_observed(report: FoldReport) -> FoldReport:
    """`report`, each folded order's lag counted on /metrics."""
    for lag in report.lags:
        fold_lag_observe(seconds=lag)
    return report


def fold_round(*, batch: int, order_ids: frozenset[int] | None = None) -> FoldReport:
    """One set: up to `batch` orders with waiting events locked and folded. In a transaction.

    Without `order_ids`, the orders waiting longest, skipping those another transaction holds;
    with them, those of them that wait, waiting for their locks.
    """
    transaction_required()
    now = timezone.now()
    waiting: dict[int, dt.datetime] = {}  # order id → its oldest waiting arrival
    events = OperationEvent.objects.filter(applied_at__isnull=True, order__isnull=False)
    if order_ids is not None:
        events = events.filter(order_id__in=sorted(order_ids))
    waiting_events = events.order_by("first_received_at").values_list(
        "order_id", "last_received_at"
    )
    if order_ids is None:  # enough events to name `batch` orders, most of the time
        waiting_events = waiting_events[: batch * 4]
    for order_id, last in waiting_events:
        waiting[order_id] = min(last, waiting.get(order_id, last))
    # Not joined to the issuer: the lock would take the issuer's row too.
    orders = list(
        orders_locked(
            CardOrder.objects.filter(pk__in=list(waiting)[:batch]),
            skip_locked=order_ids is None,
            no_key=True,
        )
    )
    if not orders:
        return FoldReport(rounds=1)
    # Their waiting copies first (events after orders: the lock order), so that the fold's
    # "last message" includes every arrival so far.
    copies = copies_count(limit=None, order_ids=[o.pk for o in orders])
    _card_mates_lock(orders)
    first = {o.pk for o in orders if o.event_count == 0}
    refresh_orders(orders, now=now)
    _cards_pass([o for o in orders if o.pk in first and o.event_count], now=now)
    lags = [(now - waiting[o.pk]).total_seconds() for o in orders]
    return FoldReport(orders=len(orders), copies=copies, rounds=1, lags=lags)


def _card_mates_lock(orders: list[CardOrder]) -> None:
    """Lock the other orders of the cards whose order gets its first events, before events.

    The card-level pass (`cards_after_ingest`) may supersede them; it skips what it cannot
    lock, so nothing here waits either.
    """
    cards = defaultdict(set)
    for order in orders:
        if order.event_count == 0:
            cards[order.issuer_id].add(order.card_id)
    for issuer_id, card_ids in cards.items():
        mates = CardOrder.objects.filter(issuer_id=issuer_id, card_id__in=sorted(card_ids))
        list(orders_locked(mates, skip_locked=True, no_key=True).values_list("id", flat=True))


def _cards_pass(orders: list[CardOrder], *, now) -> None:
    """The card-level pass for orders that got their first events (supersession, flags)."""
    by_issuer = defaultdict(set)
    for order in orders:
        by_issuer[order.issuer_id].add(order.card_id)
    for issuer in Issuer.objects.filter(pk__in=by_issuer):
        cards_after_ingest(issuer=issuer, card_ids=by_issuer[issuer.pk], now=now)


def copies_count(
    *, limit: int | None, event_ids: list[int] | None = None, order_ids: list[int] | None = None
) -> int:
    """Count up to `limit` waiting copies into their events; how many copies were counted.

    `event_ids` keeps to the copies of those events, `order_ids` to those of these orders'
    events (and `limit` may then be None). Takes no
    order's lock: the copy rows are deleted (each by one transaction only: a concurrent
    projector skips or loses the rows this one takes), then their events updated, locked in
    fingerprint order in the same statement (`tracking.intake.locking`).
    """
    transaction_required()
    quote = connection.ops.quote_name
    table = quote(EventCopy._meta.db_table)
    skip = " SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    where, params = "", []
    if event_ids is not None:
        where = f" WHERE event_id IN ({', '.join(['%s'] * len(event_ids))})"
        params += event_ids
    elif order_ids is not None:
        event = quote(OperationEvent._meta.db_table)
        where = (
            f" WHERE event_id IN (SELECT id FROM {event} "  # noqa: S608
            f"WHERE order_id IN ({', '.join(['%s'] * len(order_ids))}))"
        )
        params += order_ids
    cap = ""
    if limit is not None:
        cap = " LIMIT %s"
        params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}{where} "  # noqa: S608
            f"ORDER BY id{cap}{for_update_clause()}{skip}) RETURNING event_id, copies, received_at",
            params,
        )
        rows = cursor.fetchall()
    sums: dict[int, list] = {}
    for event_id, copies, received_at in rows:
        received_at = _aware(received_at)
        total = sums.setdefault(event_id, [0, received_at])
        total[0] += copies
        total[1] = max(total[1], received_at)
    if sums:
        _events_add(sums)
    return sum(total for total, _ in sums.values())


def _events_add(sums: dict[int, list]) -> None:
    event = connection.ops.quote_name(OperationEvent._meta.db_table)
    values = ", ".join(["(CAST(%s AS bigint), CAST(%s AS integer), %s)"] * len(sums))
    ids = sorted(sums)
    params: list = []
    field = OperationEvent._meta.get_field("last_received_at")
    for event_id in ids:
        copies, last = sums[event_id]
        params += [event_id, copies, field.get_db_prep_save(last, connection)]
    marks = ", ".join(["%s"] * len(ids))
    # Only quoted names are interpolated; values are parameters. The VALUES columns keep
    # their default names (column1...) on both backends.
    sql = (
        f"UPDATE {event} SET times_received = {event}.times_received + v.column2, "  # noqa: S608
        f"last_received_at = CASE WHEN v.column3 > {event}.last_received_at "
        f"THEN v.column3 ELSE {event}.last_received_at END "
        f"FROM (VALUES {values}) AS v WHERE {event}.id = v.column1 "
        f"AND {event}.id IN (SELECT id FROM {event} WHERE id IN ({marks}) "
        f"ORDER BY issuer_id, fingerprint{for_update_clause()})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *ids])


def _aware(value) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands back text
        value = parse_datetime(value)
    return timezone.make_aware(value, dt.UTC) if timezone.is_naive(value) else value


# ---------------------------------------------------------------------------- wake-ups


def projector_wake(scope: FoldScope) -> None:
    """Have the projector run once the current transaction commits (at once outside one).

    `INGEST_FOLD = "inline"` folds `scope` here and now instead (the rest is the sweep's).
    """
    if settings.INGEST_FOLD == "inline":
        fold_scope(scope)
    else:
        transaction.on_commit(_task_queue)


def _task_queue() -> None:
    # One task queued at a time: a storm of POSTs queues one, not one each. It starts after
    # INGEST_FOLD_DELAY, so that what arrives meanwhile is folded in the same sets.
    if cache.add(QUEUED_KEY, 1, timeout=settings.INGEST_FOLD_QUEUED_TTL):
        fold_pending_task.apply_async(countdown=settings.INGEST_FOLD_DELAY)


@shared_task(name="tracking.intake.fold_pending")
def fold_pending_task() -> int:
    """Fold every order with events waiting (woken at commit, and beat's sweep)."""
    # Cleared first: what is stored from now on queues the next run.
    cache.delete(QUEUED_KEY)
    return fold_pending().orders


def order_events_waiting(order_id: int) -> int:
    """How many of the order's events wait to be folded (unfolded, or copies not counted)."""
    unfolded = OperationEvent.objects.filter(order_id=order_id, applied_at__isnull=True).count()
    event_ids = OperationEvent.objects.filter(order_id=order_id).values("id")
    copies = EventCopy.objects.filter(event_id__in=event_ids).count()
    return unfolded + copies
