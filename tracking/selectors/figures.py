"""Open, stuck and terminal orders per stage: one read for the dashboard, /metrics and alerts.

The status classes are said once, here, by the glossary's names (`docs/architecture.md`):

- open: not terminal, counted per stage. A stage is a step of the path before its end, any
  stage with a configured threshold, or none yet (`NO_STATUS`: only unknown or hold codes).
- stuck: open, not superseded, and in its stage longer than the stage's threshold (the Stuck
  queue's rule, `order_queues.stuck_in_stage_q`).
- terminal: the operation is over (`is_terminal`): in a final stage, or ended by D1 (SUCCESSFUL
  or FAILED) at any step. Terminal orders are counted over a recent window, by when they became
  terminal: when they entered their stage, or, with no stage known, when D1 last spoke. Every
  order is open or terminal.
- the terminal groups the dashboard shows: shipped, returned, failed, cancelled
  (`TERMINAL_GROUPS`).

Everything is counted in one UNION ALL query (`count_each`), one index range per branch, so a
scrape or a dashboard visit costs the same with a million terminal orders as with a thousand.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Model, Q, QuerySet, Value

from tracking.domain import stage_limits
from tracking.domain.conditions import cancelled_q, failed_q
from tracking.domain.statuses import (
    CANCELLED_STATUSES,
    FAILED_PRODUCTION_STATUSES,
    PRODUCTION_RANK,
    RETURNED_PRODUCTION_STATUSES,
    SHIPPED_STATUS,
)
from tracking.models import CardOrder
from tracking.selectors import order_queues

DAY = dt.timedelta(hours=24)
WEEK = dt.timedelta(days=7)
# The windows terminal orders are counted over, by name; /metrics reads the first.
TERMINAL_WINDOWS = {"24h": DAY, "7d": WEEK}
NO_STATUS = ""  # orders whose only items carried unknown or hold codes
# Where a terminal order can stand: a final stage, or any step (or none) at which D1 ended it.
TERMINAL_AT_STATUSES = (*PRODUCTION_RANK, NO_STATUS)
# The groups of terminal orders the dashboard shows, with the statuses each lists.
TERMINAL_GROUPS = {
    "shipped": (SHIPPED_STATUS,),
    "returned": tuple(sorted(RETURNED_PRODUCTION_STATUSES)),
    "failed": tuple(sorted(FAILED_PRODUCTION_STATUSES)),
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
    return [*stage_limits.stage_thresholds(), NO_STATUS]


def open_in_stage_q(status: str) -> Q:
    """Open orders in `status`: the Open queue in that stage."""
    return Q(production_status=status, is_terminal=False)


def entered_since_q(since: dt.datetime) -> Q:
    """Orders that entered their current stage at or after `since` (with none known: that D1
    last spoke since then). The lists' "entered current stage" filter reads this too."""
    return Q(stage_entered_at__gte=since) | Q(
        stage_entered_at__isnull=True, last_event_at__gte=since
    )


def terminal_since_q(since: dt.datetime) -> Q:
    """Orders that became terminal at or after `since`."""
    return Q(is_terminal=True) & entered_since_q(since)


def terminal_group_q(name: str) -> Q:
    """The orders of one terminal group; "failed" includes operations D1 ended as FAILED."""
    if name == "failed":
        return failed_q()
    if name == "cancelled":
        return cancelled_q()
    return Q(production_status__in=TERMINAL_GROUPS[name])


@dataclass(frozen=True)
class StageCount:
    """An open stage: how many orders are in it now, and how many for too long."""

    status: str
    orders: int
    stuck: int | None  # None when the stage has no threshold (no known status yet)
    threshold: dt.timedelta | None


@dataclass
class StageFigures:
    """Open and stuck orders per stage now, and what became terminal recently, as of `now`."""

    now: dt.datetime
    stages: list[StageCount] = field(default_factory=list)
    # Terminal within TERMINAL_WINDOWS["24h"], by the stage they ended at.
    terminal_by_stage: dict[str, int] = field(default_factory=dict)
    # Terminal group ("shipped", ...) → {"24h": n, "7d": n}.
    terminal_by_group: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def open_by_stage(self) -> dict[str, int]:
        """Stages with open orders in them (what /metrics exposes as `portal_orders`)."""
        return {stage.status: stage.orders for stage in self.stages if stage.orders}

    @property
    def stuck_by_stage(self) -> dict[str, int]:
        """Stages with stuck orders in them (`portal_orders_past_threshold`, the stuck alert)."""
        return {stage.status: stage.stuck for stage in self.stages if stage.stuck}


def stage_figures(*, now: dt.datetime, granted: Q | None = None) -> StageFigures:
    """Count open, stuck and terminal orders as of `now`, in one query.

    `granted` narrows every count to some issuers' orders (the dashboard of a user's grant);
    None counts every order. Stages without a threshold and with no order are left out.
    """
    granted = granted or Q()
    thresholds = stage_limits.stage_thresholds()
    stages = open_stages()
    conditions = {
        **{f"open:{status}": open_in_stage_q(status) & granted for status in stages},
        **{
            f"stuck:{status}": order_queues.stuck_in_stage_q(status, now=now) & granted
            for status in thresholds
        },
        **{
            f"terminal:{status}": Q(production_status=status)
            & terminal_since_q(now - DAY)
            & granted
            for status in TERMINAL_AT_STATUSES
        },
        **{
            f"group:{name}:{window}": terminal_group_q(name)
            & terminal_since_q(now - length)
            & granted
            for name in TERMINAL_GROUPS
            for window, length in TERMINAL_WINDOWS.items()
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
    figures.terminal_by_stage = {
        status: counts[f"terminal:{status}"]
        for status in TERMINAL_AT_STATUSES
        if f"terminal:{status}" in counts
    }
    figures.terminal_by_group = {
        name: {window: counts.get(f"group:{name}:{window}", 0) for window in TERMINAL_WINDOWS}
        for name in TERMINAL_GROUPS
    }
    return figures
