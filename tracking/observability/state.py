"""The operational state read from the database: what the gauges and the alerts are made of.

Every query here is bounded by an index and by open orders or a time window, never by the whole
history, because `/metrics` runs them on every scrape (behind a short cache) and the admin
dashboard on every visit. Open, stuck and terminal orders per stage are read through
`tracking.selectors.figures`, the read the dashboard shows, so the two cannot disagree; items
are counted over the last RECENT_WINDOW only.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from tracking.domain.fold import Outcome
from tracking.models import (
    CardOrder,
    EventSource,
    Issuer,
    NotificationDelivery,
    OperationEvent,
    RefusalTally,
)
from tracking.selectors.figures import TERMINAL_WINDOWS, count_each, stage_figures
from tracking.selectors.order_queues import silent_q

logger = logging.getLogger(__name__)

SWEEP_LAST_SUCCESS_KEY = "observability:sweep-last-success"
# Terminal orders and stored items are counted over this window, not since the beginning.
RECENT_WINDOW = TERMINAL_WINDOWS["24h"]
# Every outcome an item can have; "" while it waits to be applied.
ITEM_OUTCOMES = (*(value for value, _ in Outcome.CHOICES), "")


@dataclass
class OperationsState:
    """A snapshot of the numbers operators watch, taken at `now`."""

    now: dt.datetime
    # Open, terminal (within RECENT_WINDOW) and stuck orders per stage (`figures.stage_figures`).
    orders_by_stage: dict[str, int] = field(default_factory=dict)
    terminal_by_stage: dict[str, int] = field(default_factory=dict)
    stuck_by_stage: dict[str, int] = field(default_factory=dict)
    needs_reconcile_by_reason: dict[str, int] = field(default_factory=dict)
    reconcile_failing_orders: int = 0
    # Distinct items first stored within RECENT_WINDOW, by what they did.
    events_by_outcome: dict[str, int] = field(default_factory=dict)
    unapplied_count: int = 0
    unapplied_oldest_age: float | None = None
    # issuer_id → seconds since its last webhook POST (since it was registered when none came).
    issuer_silence: dict[str, float] = field(default_factory=dict)
    issuer_last_notification: dict[str, dt.datetime | None] = field(default_factory=dict)
    # issuer_id → registered orders D1 has said nothing about beyond the silence threshold.
    silent_orders_by_issuer: dict[str, int] = field(default_factory=dict)
    deliveries_in_window: int = 0
    refused_in_window: int = 0
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    deliveries_in_previous_window: int = 0
    refused_in_previous_window: int = 0
    sweep_last_success: dt.datetime | None = None
    # Event endpoints the portal disabled after failing too long: (issuer_id, url, when, why).
    disabled_event_endpoints: list[tuple[str, str, dt.datetime, str]] = field(default_factory=list)

    @property
    def sweep_age(self) -> float | None:
        if self.sweep_last_success is None:
            return None
        return max((self.now - self.sweep_last_success).total_seconds(), 0.0)


def sweep_success_record(*, at: dt.datetime | None = None) -> None:
    """Remember that a reconcile sweep finished without error (shared cache, all processes)."""
    try:
        cache.set(SWEEP_LAST_SUCCESS_KEY, (at or timezone.now()).timestamp(), None)
    except Exception:  # a cache outage must not fail the sweep task
        logger.warning("could not record the sweep's success in the cache", exc_info=True)


def sweep_last_success() -> dt.datetime | None:
    """When a sweep last succeeded, or None (also when the cache cannot be read)."""
    try:
        stamp = cache.get(SWEEP_LAST_SUCCESS_KEY)
    except Exception:
        logger.warning("could not read the sweep's last success from the cache", exc_info=True)
        return None
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC)


def operations_state(*, now: dt.datetime | None = None) -> OperationsState:
    """Read the operational numbers from the database (about ten indexed queries).

    None of them reads the history: open orders per stage, terminal orders and items of the
    last RECENT_WINDOW, flagged and unapplied rows through partial indexes, deliveries of the
    last two alert windows, and each issuer's latest delivery.
    """
    now = now or timezone.now()
    state = OperationsState(now=now)
    since = now - RECENT_WINDOW

    stages = stage_figures(now=now)
    state.orders_by_stage = stages.open_by_stage
    state.terminal_by_stage = stages.terminal_by_stage
    state.stuck_by_stage = stages.stuck_by_stage
    state.needs_reconcile_by_reason = dict(
        CardOrder.objects.filter(needs_reconcile=True)
        .order_by()
        .values_list("reconcile_reason")
        .annotate(n=Count("id"))
        .values_list("reconcile_reason", "n")
    )
    state.reconcile_failing_orders = CardOrder.objects.filter(
        needs_reconcile=True, reconcile_attempts__gte=settings.ALERT_RECONCILE_ATTEMPTS
    ).count()
    state.events_by_outcome = count_each(
        OperationEvent,
        {outcome: Q(outcome=outcome, first_received_at__gte=since) for outcome in ITEM_OUTCOMES},
    )
    unapplied = OperationEvent.objects.filter(applied_at__isnull=True).aggregate(
        n=Count("id"), oldest=Min("first_received_at")
    )
    state.unapplied_count = unapplied["n"]
    if unapplied["oldest"] is not None:
        state.unapplied_oldest_age = max((now - unapplied["oldest"]).total_seconds(), 0.0)

    last_post = (
        NotificationDelivery.objects.filter(issuer=OuterRef("pk"), source=EventSource.WEBHOOK)
        .order_by("-received_at")
        .values("received_at")[:1]
    )
    for issuer_id, created_at, last in (
        Issuer.objects.filter(is_active=True)
        .annotate(last=Subquery(last_post))
        .values_list("issuer_id", "created_at", "last")
    ):
        state.issuer_last_notification[issuer_id] = last
        state.issuer_silence[issuer_id] = max((now - (last or created_at)).total_seconds(), 0.0)

    state.silent_orders_by_issuer = dict(
        CardOrder.objects.filter(silent_q(now=now))
        .order_by()
        .values_list("issuer__issuer_id")
        .annotate(n=Count("id"))
        .values_list("issuer__issuer_id", "n")
    )

    window = dt.timedelta(seconds=settings.ALERT_REFUSED_WINDOW)
    webhook = NotificationDelivery.objects.filter(source=EventSource.WEBHOOK)
    current = webhook.filter(received_at__gt=now - window, received_at__lte=now)
    previous = webhook.filter(received_at__gt=now - 2 * window, received_at__lte=now - window)
    state.deliveries_in_window = current.count()
    state.refused_by_reason = dict(
        current.filter(status_code__gte=400)
        .order_by()
        .values_list("error_code")
        .annotate(n=Count("id"))
        .values_list("error_code", "n")
    )
    # Calls refused at the gate are counted per minute, not kept as deliveries: they count too.
    tallied_before = 0
    for code, tallied_now, tallied_then in (
        RefusalTally.objects.filter(minute__gt=now - 2 * window, minute__lte=now)
        .order_by()
        .values_list("error_code")
        .annotate(
            now=Sum("count", filter=Q(minute__gt=now - window)),
            then=Sum("count", filter=Q(minute__lte=now - window)),
        )
        .values_list("error_code", "now", "then")
    ):
        if tallied_now:
            state.refused_by_reason[code] = state.refused_by_reason.get(code, 0) + tallied_now
            state.deliveries_in_window += tallied_now
        tallied_before += tallied_then or 0
    state.refused_in_window = sum(state.refused_by_reason.values())
    before = previous.aggregate(n=Count("id"), refused=Count("id", filter=Q(status_code__gte=400)))
    state.deliveries_in_previous_window = before["n"] + tallied_before
    state.refused_in_previous_window = before["refused"] + tallied_before

    state.sweep_last_success = sweep_last_success()
    from tracking.models.outbound import EventEndpoint

    state.disabled_event_endpoints = list(
        EventEndpoint.objects.filter(enabled=False, disabled_at__isnull=False)
        .order_by("issuer__issuer_id", "id")
        .values_list("issuer__issuer_id", "url", "disabled_at", "disabled_reason")
    )
    return state
