"""The figures on the admin's front page, each with the filter that lists the rows behind it.

A handful of aggregate queries that PostgreSQL answers from indexes alone: open and stuck
orders per stage and what became terminal in the last 24 hours and 7 days, read through
`tracking.selectors.figures` (as /metrics reads them, so the two agree), the Exceptions
queue, notifications per hour with their duplicate and out-of-order rates, and what
reconciliation corrected. Terminal orders are counted over a window, not since the
beginning, so the page costs the same with a million shipped orders as with a thousand.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncHour

from tracking.domain.conditions import carrier_word_unknown_q
from tracking.domain.fold import Outcome
from tracking.models import (
    CardOrder,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
    ReconcileOutcome,
)
from tracking.selectors import order_queues
from tracking.selectors.figures import DAY, WEEK, StageCount, count_each, stage_figures


@dataclass(frozen=True)
class HourCount:
    hour: dt.datetime
    deliveries: int
    items: int
    new: int
    duplicates: int
    rejected: int
    stale: int
    # The messages behind the repeat and refusal figures: the rows of the lists they open.
    deliveries_with_duplicates: int = 0
    deliveries_refused: int = 0

    @property
    def duplicate_rate(self) -> float | None:
        return self.duplicates / self.items if self.items else None

    @property
    def stale_rate(self) -> float | None:
        return self.stale / self.new if self.new else None


@dataclass
class DashboardFigures:
    now: dt.datetime
    # Open and stuck orders per stage (`figures.stage_figures`, the numbers /metrics shows).
    stages: list[StageCount] = field(default_factory=list)
    # The terminal groups (`figures.TERMINAL_GROUPS`) -> {"24h": n, "7d": n}
    terminal: dict[str, dict[str, int]] = field(default_factory=dict)
    open_exceptions: int = 0
    needs_reconcile: int = 0
    silent_orders: int = 0  # registered, nothing from D1 beyond the threshold
    hours: list[HourCount] = field(default_factory=list)
    reconcile_changed: dict[str, int] = field(default_factory=dict)
    reconcile_attempts: dict[str, int] = field(default_factory=dict)
    # Every work queue (`order_queues.QUEUES`) by its key: the row count of its list.
    queues: dict[str, int] = field(default_factory=dict)
    # Carrier words the portal does not understand, on orders' current shipment: word → orders.
    carrier_words_unknown: dict[str, int] = field(default_factory=dict)

    @property
    def carrier_words_unknown_orders(self) -> int:
        return sum(self.carrier_words_unknown.values())

    @property
    def open_orders(self) -> int:
        return sum(stage.orders for stage in self.stages)

    @property
    def total_stuck(self) -> int:
        return sum(stage.stuck or 0 for stage in self.stages)

    @property
    def failures(self) -> dict[str, int]:
        return self.terminal.get("failed", {})

    @property
    def cancellations(self) -> dict[str, int]:
        return self.terminal.get("cancelled", {})

    @property
    def last_24h(self) -> HourCount:
        return HourCount(
            hour=self.now,
            deliveries=sum(h.deliveries for h in self.hours),
            items=sum(h.items for h in self.hours),
            new=sum(h.new for h in self.hours),
            duplicates=sum(h.duplicates for h in self.hours),
            rejected=sum(h.rejected for h in self.hours),
            stale=sum(h.stale for h in self.hours),
            deliveries_with_duplicates=sum(h.deliveries_with_duplicates for h in self.hours),
            deliveries_refused=sum(h.deliveries_refused for h in self.hours),
        )


def dashboard_figures(*, now: dt.datetime, issuers: QuerySet | None = None) -> DashboardFigures:
    """Read the dashboard's figures as of `now` (about ten queries; writes nothing).

    `issuers` (a queryset of Issuer, read as a subquery) counts only their orders, messages and
    calls: a user's grant (`tracking.services.issuer_grants`); None counts every issuer.
    """
    granted = Q() if issuers is None else Q(issuer__in=issuers.values("pk"))
    figures = DashboardFigures(now=now)
    stages = stage_figures(now=now, granted=granted)
    figures.stages, figures.terminal = stages.stages, stages.terminal_by_group
    orders = CardOrder.objects.filter(granted)
    figures.open_exceptions = orders.filter(order_queues.open_exception_q()).count()
    figures.needs_reconcile = orders.filter(needs_reconcile=True).count()
    figures.silent_orders = orders.filter(order_queues.silent_q(now=now)).count()
    _hourly_notifications(figures, now=now, granted=granted)
    attempts_granted = Q() if issuers is None else Q(order__issuer__in=issuers.values("pk"))
    _reconciliation(figures, now=now, granted=attempts_granted)
    _queue_counts(figures, now=now, granted=granted)
    _carrier_words_unknown(figures, granted=granted)
    return figures


def _queue_counts(figures: DashboardFigures, *, now: dt.datetime, granted: Q) -> None:
    """Every queue's count, by the queue's own condition (one query)."""
    counts = count_each(
        CardOrder, {key: queue.q(now=now) & granted for key, queue in order_queues.QUEUES.items()}
    )
    figures.queues = {key: counts.get(key, 0) for key in order_queues.QUEUES}


def _carrier_words_unknown(figures: DashboardFigures, *, granted: Q) -> None:
    """The carrier words not understood (class `unknown`), with how many orders show each."""
    figures.carrier_words_unknown = dict(
        CardOrder.objects.filter(granted)
        .filter(carrier_word_unknown_q())
        .order_by()
        .values_list("shipment_status")
        .annotate(n=Count("pk"))
        .order_by("-n", "shipment_status")
        .values_list("shipment_status", "n")
    )


def _hourly_notifications(figures: DashboardFigures, *, now: dt.datetime, granted: Q) -> None:
    first_hour = (now - DAY).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    deliveries = {
        row["hour"]: row
        for row in NotificationDelivery.objects.filter(granted, received_at__gte=first_hour)
        .annotate(hour=TruncHour("received_at"))
        .order_by()
        .values("hour")
        .annotate(
            deliveries=Count("pk"),
            items=Sum("item_count"),
            new=Sum("new_count"),
            duplicates=Sum("duplicate_count"),
            rejected=Sum("rejected_count"),
            with_duplicates=Count("pk", filter=Q(duplicate_count__gt=0)),
            # The deliveries list's "refused" filter: refused, or with refused items.
            refused=Count("pk", filter=Q(status_code__gte=400) | Q(rejected_count__gt=0)),
        )
    }
    stale = dict(
        OperationEvent.objects.filter(
            granted, outcome=Outcome.STALE, first_received_at__gte=first_hour
        )
        .annotate(hour=TruncHour("first_received_at"))
        .order_by()
        .values_list("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
    for offset in range(24):
        hour = first_hour + dt.timedelta(hours=offset)
        row = deliveries.get(hour, {})
        figures.hours.append(
            HourCount(
                hour=hour,
                deliveries=row.get("deliveries") or 0,
                items=row.get("items") or 0,
                new=row.get("new") or 0,
                duplicates=row.get("duplicates") or 0,
                rejected=row.get("rejected") or 0,
                stale=stale.get(hour, 0),
                deliveries_with_duplicates=row.get("with_duplicates") or 0,
                deliveries_refused=row.get("refused") or 0,
            )
        )


def _reconciliation(figures: DashboardFigures, *, now: dt.datetime, granted: Q) -> None:
    counts = ReconcileAttempt.objects.filter(granted, started_at__gte=now - WEEK).aggregate(
        # Answers that corrected an order: the rows of the attempts list the figure opens.
        changed_24h=Count(
            "pk", filter=Q(outcome=ReconcileOutcome.CHANGED, started_at__gte=now - DAY)
        ),
        changed_7d=Count("pk", filter=Q(outcome=ReconcileOutcome.CHANGED)),
        all_24h=Count("pk", filter=Q(started_at__gte=now - DAY)),
        all_7d=Count("pk"),
    )
    figures.reconcile_changed = {"24h": counts["changed_24h"], "7d": counts["changed_7d"]}
    figures.reconcile_attempts = {"24h": counts["all_24h"], "7d": counts["all_7d"]}
