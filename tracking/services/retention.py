"""The retention policy: what old rows are removed, table by table, without changing any order.

`retention_prune` applies the RETENTION_* settings (0 keeps a table whole):

- deliveries whose items live nowhere else (refused POSTs with their kept bodies, POSTs that
  only repeated stored items) older than RETENTION_DELIVERY_DAYS; a delivery that first stored
  an event, or that a reconcile attempt points to, is kept as that row's provenance;
- events of orders finished (a final stage, nothing to reconcile) more than
  RETENTION_FINISHED_ORDER_DAYS ago, compacted: an event that changed nothing (stale, no
  change) is removed only when folding the order's remaining events gives the same state, so
  the timeline keeps every step and the order stays as it is;
- reconcile attempts older than RETENTION_RECONCILE_ATTEMPT_DAYS (the order keeps its last
  outcome in its own columns);
- the per-minute tallies of refused calls (credentials, method, rate) older than
  RETENTION_REFUSAL_TALLY_DAYS;
- audit entries older than RETENTION_AUDIT_DAYS, never by default.

Each step works in batches, each batch its own transaction, so that ingest is never held up
for long; running it twice is harmless. Beat runs it as `retention_prune_task` (at the end).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from celery import shared_task
from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from tracking.domain.fold import Outcome, derive_order_state
from tracking.domain.order_state import OrderState
from tracking.domain.ordering import EventFacts
from tracking.intake.locking import events_locked, orders_locked
from tracking.models import (
    AuditEntry,
    CardOrder,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
    RefusalTally,
    zone_by_name,
)

logger = logging.getLogger(__name__)

BATCH = 500
# Outcomes of events that may be redundant; the fold decides for each one.
REDUNDANT_OUTCOMES = (Outcome.STALE, Outcome.NO_CHANGE)
# Counts of the events the order holds, not part of what the order shows about the card.
_NOT_COMPARED = {"event_count", "outcomes"}


@dataclass
class PruneReport:
    """How many rows each rule removed (or would remove, on a dry run)."""

    dry_run: bool = False
    removed: dict[str, int] = field(default_factory=dict)
    orders_compacted: int = 0

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {count} {what}" for what, count in self.removed.items()]
        lines.append(f"events compacted in {self.orders_compacted} finished order(s)")
        return lines


def retention_prune(*, now: dt.datetime | None = None, dry_run: bool = False) -> PruneReport:
    """Apply the retention policy; return what it removed. Writes nothing when `dry_run`."""
    now = now or timezone.now()
    report = PruneReport(dry_run=dry_run)
    report.removed["deliveries"] = _prune_deliveries(now=now, dry_run=dry_run)
    report.removed["events"], report.orders_compacted = _compact_terminal_orders(
        now=now, dry_run=dry_run
    )
    report.removed["reconcile attempts"] = _prune_by_age(
        ReconcileAttempt, "started_at", settings.RETENTION_RECONCILE_ATTEMPT_DAYS, now, dry_run
    )
    report.removed["refused-call tallies"] = _prune_by_age(
        RefusalTally, "minute", settings.RETENTION_REFUSAL_TALLY_DAYS, now, dry_run
    )
    report.removed["audit entries"] = _prune_by_age(
        AuditEntry, "at", settings.RETENTION_AUDIT_DAYS, now, dry_run
    )
    logger.info("retention prune: %s", "; ".join(report.lines()))
    return report


def _cutoff(days: int, now: dt.datetime) -> dt.datetime | None:
    return now - dt.timedelta(days=days) if days and days > 0 else None


def _delete_in_batches(queryset: models.QuerySet, dry_run: bool) -> int:
    """Delete the rows of `queryset` (plain SQL, no per-row signals) a batch at a time."""
    if dry_run:
        return queryset.count()
    model = queryset.model
    removed = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return removed
        with transaction.atomic():
            # The base queryset: evidence models refuse deletion through their own manager.
            removed += models.QuerySet(model).filter(pk__in=ids)._raw_delete(queryset.db)


def _prune_deliveries(*, now: dt.datetime, dry_run: bool) -> int:
    cutoff = _cutoff(settings.RETENTION_DELIVERY_DAYS, now)
    if cutoff is None:
        return 0
    unreferenced = (
        NotificationDelivery.objects.filter(received_at__lt=cutoff)
        .exclude(Exists(OperationEvent.objects.filter(delivery=OuterRef("pk"))))
        .exclude(Exists(ReconcileAttempt.objects.filter(delivery=OuterRef("pk"))))
        .order_by()
    )
    return _delete_in_batches(unreferenced, dry_run)


def _prune_by_age(model, column: str, days: int, now: dt.datetime, dry_run: bool) -> int:
    cutoff = _cutoff(days, now)
    if cutoff is None:
        return 0
    return _delete_in_batches(
        models.QuerySet(model).filter(**{f"{column}__lt": cutoff}).order_by(), dry_run
    )


# ---------------------------------------------------------------------------- events


def terminal_orders_to_compact(*, now: dt.datetime) -> models.QuerySet[CardOrder]:
    """Orders in a final stage, with nothing to reconcile, whose last event is old enough."""
    cutoff = _cutoff(settings.RETENTION_FINISHED_ORDER_DAYS, now)
    if cutoff is None:
        return CardOrder.objects.none()
    return CardOrder.objects.filter(
        is_terminal=True, needs_reconcile=False, last_event_at__lt=cutoff
    )


def comparable_state(state: OrderState) -> dict:
    """What an order shows about its card: the derived state without the event counts."""
    return {k: v for k, v in state.__dict__.items() if k not in _NOT_COMPARED}


def _compact_terminal_orders(*, now: dt.datetime, dry_run: bool) -> tuple[int, int]:
    orders = terminal_orders_to_compact(now=now)
    candidates = (
        OperationEvent.objects.filter(outcome__in=REDUNDANT_OUTCOMES, order__in=orders)
        .order_by("order_id")
        .values_list("order_id", flat=True)
        .distinct()
    )
    removed = compacted = 0
    last_id = 0
    while True:
        order_ids = list(candidates.filter(order_id__gt=last_id)[:BATCH])
        if not order_ids:
            return removed, compacted
        last_id = order_ids[-1]
        with transaction.atomic():
            # Locked like ingest locks them, and checked again: an item may have come since.
            locked = list(
                orders_locked(orders.filter(pk__in=order_ids)).values_list("pk", flat=True)
            )
            redundant = _redundant_events(locked)
            ids = [event_id for events in redundant.values() for event_id in events]
            if ids and not dry_run:
                # The events too, in fingerprint order, before they are deleted.
                list(events_locked(OperationEvent.objects.filter(pk__in=ids)))
                OperationEvent.objects.filter(pk__in=ids).delete()
            removed += len(ids)
            compacted += sum(1 for events in redundant.values() if events)


def _redundant_events(order_ids: list[int]) -> dict[int, list[int]]:
    """Per order, the events whose removal leaves the folded state exactly as it is."""
    facts: dict[int, list[EventFacts]] = defaultdict(list)
    outcomes: dict[int, str] = {}
    for event_id, order_id, fingerprint, first, last, payload, outcome in (
        OperationEvent.objects.filter(order_id__in=order_ids)
        .order_by("first_received_at", "id")
        .values_list(
            "id",
            "order_id",
            "fingerprint",
            "first_received_at",
            "last_received_at",
            "payload",
            "outcome",
        )
    ):
        facts[order_id].append(EventFacts(event_id, fingerprint, first, last, payload))
        outcomes[event_id] = outcome
    # The fold's other inputs, as ingest gives them: the issuer's zone and D1's latest answer
    # (an event that answer repeated must stay, or the holds it closed would open again).
    inputs = {
        pk: {"zone": zone_by_name(zone_name), "d1_answer": answer}
        for pk, zone_name, answer in CardOrder.objects.filter(pk__in=list(facts)).values_list(
            "pk", "issuer__time_zone", "d1_answer"
        )
    }
    redundant: dict[int, list[int]] = {}
    for order_id, events in facts.items():
        target = comparable_state(derive_order_state(events, **inputs[order_id]))
        kept = list(events)
        removable = []
        # One at a time, each checked against the full fold: removing two events together
        # could differ from removing each alone.
        for event in events:
            if outcomes[event.key] not in REDUNDANT_OUTCOMES:
                continue
            trial = [e for e in kept if e.key != event.key]
            if trial and comparable_state(derive_order_state(trial, **inputs[order_id])) == target:
                kept = trial
                removable.append(event.key)
        redundant[order_id] = removable
    return redundant


@shared_task(name="tracking.retention_prune")
def retention_prune_task() -> list[str]:
    """Apply the retention policy (RETENTION_* settings); log and return what it removed."""
    return retention_prune().lines()
