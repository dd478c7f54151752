"""Open, stuck and finished orders per stage: the one read the dashboard, /metrics and alerts share.

The status classes are said once, here, with one name each:

- open: not terminal, counted per stage. A stage is a step of the path before its end, any
  stage with a configured threshold, or none yet (`NO_STATUS`: only unknown or hold codes).
- stuck: open, not superseded, and in its stage longer than the stage's threshold (the Stuck
  queue's rule, `order_queues.stuck_in_stage_q`).
- finished: terminal, i.e. in a final stage or ended by D1 (SUCCESSFUL or FAILED) at any step.
  Finished orders are counted over a recent window, by when they finished: when they entered
  their stage, or, with no stage known, when D1 last spoke. Every order is open or finished.
- the finished classes the dashboard shows: shipped, returned, failed, cancelled
  (`FINISHED_CLASSES`).

Everything is counted in one UNION ALL query (`count_each`), one index range per branch, so a
scrape or a dashboard visit costs the same with a million finished orders as with a thousand.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Model, Q, QuerySet, Value

from tracking.domain.rules import (
    CANCELLED_STATUSES,
    EXCEPTION_STATUSES,
    PRODUCTION_RANK,
    RETURNED_PRODUCTION_STATUSES,
    SHIPPED_STATUS,
)
from tracking.models import CardOrder
from tracking.selectors import order_queues

DAY = dt.timedelta(hours=24)
WEEK = dt.timedelta(days=7)
# The windows finished orders are counted over, by name; /metrics reads the first.
FINISHED_WINDOWS = {"24h": DAY, "7d": WEEK}
NO_STATUS = ""  # orders whose only items carried unknown or hold codes
# Where a finished order can stand: a final stage, or any step (or none) at which D1 ended it.
FINISHED_AT_STATUSES = (*PRODUCTION_RANK, NO_STATUS)
# The classes of finished orders the dashboard shows, with the statuses each lists.
FINISHED_CLASSES = {
    "shipped": (SHIPPED_STATUS,),
    "returned": tuple(sorted(RETURNED_PRODUCTION_STATUSES)),
    "failed": tuple(sorted(EXCEPTION_STATUSES)),
    "cancelled": tuple(sorted(CANCELLED_STATUSES)),
}


def count_each(model: type[Model], conditions: dict[str, Q]) -> dict[str, int]:
    """COUNT(*) of each labelled condition in one UNION ALL query: one index range per branch.

    Counting `*` (not a column) lets PostgreSQL answer each branch from its index alone. Labels
    that count nothing are left out.
    """
    parts: list[QuerySet] = [
        model.objects.filter(condition)
        .order_by()
        .annotate(label=Value(label))
        .values("label")
        .annotate(n=Count("*"))
        .values_list("label", "n")
        for label, condition in conditions.items()
    ]
    if not parts:
        return {}
    union = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    return {label: n for label, n in union.order_by() if n}


def open_stages() -> list[str]:
    """Every stage an open order is counted in: the stages with a threshold, then none yet."""
    return [*order_queues.stage_thresholds(), NO_STATUS]


def open_in_stage_q(status: str) -> Q:
    """Open orders in `status`: the Open queue in that stage."""
    return Q(production_status=status, is_terminal=False)


def entered_since_q(since: dt.datetime) -> Q:
    """Orders that entered their current stage at or after `since` (with none known: that D1
    last spoke since then). The lists' "entered current stage" filter reads this too."""
    return Q(stage_entered_at__gte=since) | Q(
        stage_entered_at__isnull=True, last_event_at__gte=since
    )


def finished_since_q(since: dt.datetime) -> Q:
    """Orders that finished at or after `since`."""
    return Q(is_terminal=True) & entered_since_q(since)


def finished_class_q(name: str) -> Q:
    """The orders of one finished class; "failed" includes operations D1 ended as FAILED."""
    if name == "failed":
        return order_queues.failed_q()
    if name == "cancelled":
        return order_queues.cancelled_q()
    return Q(production_status__in=FINISHED_CLASSES[name])


@dataclass(frozen=True)
class StageCount:
    """An open stage: how many orders are in it now, and how many for too long."""

    status: str
    orders: int
    stuck: int | None  # None when the stage has no threshold (no known status yet)
    threshold: dt.timedelta | None


@dataclass
class StageFigures:
    """Open and stuck orders per stage now, and what finished recently, as of `now`."""

    now: dt.datetime
    stages: list[StageCount] = field(default_factory=list)
    # Finished within FINISHED_WINDOWS["24h"], by the stage they finished at.
    finished_by_stage: dict[str, int] = field(default_factory=dict)
    # Finished class ("shipped", ...) → {"24h": n, "7d": n}.
    finished_by_class: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def open_by_stage(self) -> dict[str, int]:
        """Stages with open orders in them (what /metrics exposes as `portal_orders`)."""
        return {stage.status: stage.orders for stage in self.stages if stage.orders}

    @property
    def stuck_by_stage(self) -> dict[str, int]:
        """Stages with stuck orders in them (`portal_orders_past_threshold`, the stuck alert)."""
        return {stage.status: stage.stuck for stage in self.stages if stage.stuck}


def stage_figures(*, now: dt.datetime, granted: Q | None = None) -> StageFigures:
    """Count open, stuck and finished orders as of `now`, in one query.

    `granted` narrows every count to some issuers' orders (the dashboard of a user's grant);
    None counts every order. Stages without a threshold and with no order are left out.
    """
    granted = granted or Q()
    thresholds = order_queues.stage_thresholds()
    stages = open_stages()
    conditions = {
        **{f"open:{status}": open_in_stage_q(status) & granted for status in stages},
        **{
            f"stuck:{status}": order_queues.stuck_in_stage_q(status, now=now) & granted
            for status in thresholds
        },
        **{
            f"finished:{status}": Q(production_status=status)
            & finished_since_q(now - DAY)
            & granted
            for status in FINISHED_AT_STATUSES
        },
        **{
            f"class:{name}:{window}": finished_class_q(name)
            & finished_since_q(now - length)
            & granted
            for name in FINISHED_CLASSES
            for window, length in FINISHED_WINDOWS.items()
        },
    }
    counts = count_each(CardOrder, conditions)
    figures = StageFigures(now=now)
    for status in stages:
        orders = counts.get(f"open:{status}", 0)
        if status not in thresholds and not orders:
            continue
        figures.stages.append(
            StageCount(
                status=status,
                orders=orders,
                stuck=counts.get(f"stuck:{status}", 0) if status in thresholds else None,
                threshold=thresholds.get(status),
            )
        )
    figures.finished_by_stage = {
        status: counts[f"finished:{status}"]
        for status in FINISHED_AT_STATUSES
        if f"finished:{status}" in counts
    }
    figures.finished_by_class = {
        name: {window: counts.get(f"class:{name}:{window}", 0) for window in FINISHED_WINDOWS}
        for name in FINISHED_CLASSES
    }
    return figures
