"""Production files: the orders of one (issuer, inputFileName), their stages, laggards, forecast.

The file page asks the database live, with a few set-based queries on the
(issuer, input_file_name, production_status, stage_entered_at) index. The files list reads
`ProductionFile`, which `files_refresh` keeps up to date for the files whose orders changed.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, QuerySet

from tracking.domain.conditions import exception_q
from tracking.domain.statuses import (
    CANCELLED_STATUSES,
    PRODUCTION_RANK,
    SHIPPED_OR_RETURNED_STATUSES,
)
from tracking.insight.stage_times import PRODUCTION_STAGES
from tracking.models import CardOrder, OrderPrediction, ProductionFile

FILES_PER_QUERY = 200


def file_orders(*, issuer_id: int, name: str) -> QuerySet[CardOrder]:
    return CardOrder.objects.filter(issuer_id=issuer_id, input_file_name=name)


@dataclass(frozen=True)
class StageCount:
    status: str
    count: int
    percent: float


@dataclass
class FileFigures:
    orders: int = 0
    stage_counts: dict[str, int] = field(default_factory=dict)
    shipped: int = 0
    finished: int = 0
    exceptions: int = 0
    cancelled: int = 0
    first_event_at: dt.datetime | None = None
    last_event_at: dt.datetime | None = None

    def share(self, count: int) -> float:
        """A count as a percentage of the file's orders."""
        return 100.0 * count / self.orders if self.orders else 0.0

    @property
    def share_shipped(self) -> float:
        return self.share(self.shipped)

    @property
    def share_finished(self) -> float:
        return self.share(self.finished)

    @property
    def share_exceptions(self) -> float:
        return self.share(self.exceptions)

    @property
    def share_cancelled(self) -> float:
        return self.share(self.cancelled)

    def bar(self) -> list[StageCount]:
        """The stages in path order (then failures and unknown codes), with their share."""
        ordered = sorted(self.stage_counts, key=_stage_order)
        return [
            StageCount(s, self.stage_counts[s], self.share(self.stage_counts[s])) for s in ordered
        ]

    def add(self, *, status: str, count: int, finished: int, exceptions: int, first, last) -> None:
        self.orders += count
        self.stage_counts[status] = self.stage_counts.get(status, 0) + count
        self.finished += finished
        self.exceptions += exceptions
        if status in SHIPPED_OR_RETURNED_STATUSES:
            self.shipped += count
        if status in CANCELLED_STATUSES:
            self.cancelled += count
        if first is not None and (self.first_event_at is None or first < self.first_event_at):
            self.first_event_at = first
        if last is not None and (self.last_event_at is None or last > self.last_event_at):
            self.last_event_at = last


def _stage_order(status: str) -> tuple[int, str]:
    return (PRODUCTION_RANK.get(status, 1000), status)


def _figures_rows(orders: QuerySet[CardOrder], keys: tuple[str, ...]):
    return (
        orders.values(*keys, "production_status")
        .annotate(
            n=Count("pk"),
            finished=Count("pk", filter=Q(is_terminal=True)),
            exceptions=Count("pk", filter=exception_q()),
            first=Min("first_event_at"),
            last=Max("last_event_at"),
        )
        .order_by()
    )


def _add_row(figures: FileFigures, row: dict) -> None:
    figures.add(
        status=row["production_status"] or "",
        count=row["n"],
        finished=row["finished"],
        exceptions=row["exceptions"],
        first=row["first"],
        last=row["last"],
    )


def file_figures(*, issuer_id: int, name: str) -> FileFigures:
    """Counts per stage, shipped, finished, exceptions, cancellations, first and last event."""
    figures = FileFigures()
    for row in _figures_rows(file_orders(issuer_id=issuer_id, name=name), ()):
        _add_row(figures, row)
    return figures


# ---------------------------------------------------------------------------- laggards


@dataclass(frozen=True)
class StageMedian:
    status: str
    count: int
    median_entered_at: dt.datetime

    def median_elapsed(self, now: dt.datetime) -> dt.timedelta:
        return now - self.median_entered_at


@dataclass
class Laggards:
    medians: list[StageMedian]
    count: int
    orders: list[CardOrder]
    threshold: dt.timedelta


def file_laggards(*, issuer_id: int, name: str, figures: FileFigures, limit: int = 50) -> Laggards:
    """Open orders in the file that have been in their stage longer than the file's median
    order in the same stage, by more than INSIGHT_LAGGARD_THRESHOLD; the longest first.

    One query per open stage for its median (the middle row of the index range), one count
    per open stage and one page of laggards.
    """
    threshold = settings.INSIGHT_LAGGARD_THRESHOLD
    orders = file_orders(issuer_id=issuer_id, name=name).filter(
        is_terminal=False, stage_entered_at__isnull=False
    )
    medians = []
    for status in PRODUCTION_STAGES:
        count = figures.stage_counts.get(status, 0)
        if not count:
            continue
        middle = list(
            orders.filter(production_status=status)
            .order_by("stage_entered_at")
            .values_list("stage_entered_at", flat=True)[(count - 1) // 2 : count // 2 + 1]
        )
        if middle:
            # The median of the entry times: the mean of the two middle ones for an even count.
            median = middle[0] + (middle[-1] - middle[0]) / 2
            medians.append(StageMedian(status, count, median))
    if not medians:
        return Laggards([], 0, [], threshold)
    behind = {
        median.status: Q(
            production_status=median.status,
            stage_entered_at__lt=median.median_entered_at - threshold,
        )
        for median in medians
    }
    # Counted stage by stage: each count is one short range of the index, where the OR of
    # them all would read the whole file's range.
    count = sum(orders.filter(condition).count() for condition in behind.values())
    lagging = orders.filter(functools.reduce(operator.or_, behind.values()))
    page = list(
        lagging.select_related("issuer", "prediction").order_by("stage_entered_at", "pk")[:limit]
    )
    return Laggards(medians, count, page, threshold)


# ---------------------------------------------------------------------------- forecast


@dataclass(frozen=True)
class FileForecast:
    predicted: int
    likely_late: int
    latest_p50: dt.date | None
    latest_p90: dt.date | None


def file_forecast(*, issuer_id: int, name: str) -> FileForecast:
    """When the file's open orders are predicted to have shipped, and how many look late.

    Read from the file's row, which the refresh writes together with the predictions it sums
    up (so it is exactly as fresh as they are); nothing before the file's first refresh.
    """
    found = (
        ProductionFile.objects.filter(issuer_id=issuer_id, name=name)
        .values_list("predicted_orders", "likely_late_orders", "predicted_p50", "predicted_p90")
        .first()
    )
    return FileForecast(*found) if found else FileForecast(0, 0, None, None)


# ---------------------------------------------------------------------------- the files list


def files_refresh(*, changed_since: dt.datetime | None, now: dt.datetime) -> int:
    """Recompute `ProductionFile` for files with an order updated since `changed_since`
    (every file when None); returns how many files were written.
    """
    if connection.vendor == "postgresql":
        return _files_refresh_sql(changed_since=changed_since, now=now)
    orders = CardOrder.objects.exclude(input_file_name="")
    if changed_since is not None:
        orders = orders.filter(updated_at__gte=changed_since)
    touched = sorted(set(orders.values_list("issuer_id", "input_file_name").order_by()))
    for start in range(0, len(touched), FILES_PER_QUERY):
        _files_write(touched[start : start + FILES_PER_QUERY], now=now)
    return len(touched)


def _files_write(pairs: list[tuple[int, str]], *, now: dt.datetime) -> None:
    wanted = Q()
    for issuer_id, name in pairs:
        wanted |= Q(issuer_id=issuer_id, input_file_name=name)
    figures: dict[tuple[int, str], FileFigures] = {pair: FileFigures() for pair in pairs}
    for row in _figures_rows(CardOrder.objects.filter(wanted), ("issuer_id", "input_file_name")):
        _add_row(figures[(row["issuer_id"], row["input_file_name"])], row)
    rows = []
    for (issuer_id, name), found in figures.items():
        rows.append(
            ProductionFile(
                issuer_id=issuer_id,
                name=name,
                orders=found.orders,
                stage_counts=found.stage_counts,
                shipped=found.shipped,
                finished=found.finished,
                exceptions=found.exceptions,
                cancelled=found.cancelled,
                share_finished=found.share_finished,
                first_event_at=found.first_event_at,
                last_event_at=found.last_event_at,
                refreshed_at=now,
            )
        )
    with transaction.atomic():
        ProductionFile.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["issuer", "name"],
            update_fields=[
                "orders",
                "stage_counts",
                "shipped",
                "finished",
                "exceptions",
                "cancelled",
                "share_finished",
                "first_event_at",
                "last_event_at",
                "refreshed_at",
            ],
        )


# PostgreSQL: the files' figures from one grouped query over their orders (the same query
# `file_figures` runs, as a subquery), upserted in one statement.
_FILES_SQL = """
INSERT INTO tracking_productionfile (issuer_id, name, orders, stage_counts, shipped, finished,
    exceptions, cancelled, share_finished, first_event_at, last_event_at, refreshed_at)
SELECT g.issuer_id, g.input_file_name, sum(g.n), jsonb_object_agg(g.production_status, g.n),
       coalesce(sum(g.n) FILTER (WHERE g.production_status = ANY(%s)), 0), sum(g.finished),
       sum(g.exceptions), coalesce(sum(g.n) FILTER (WHERE g.production_status = ANY(%s)), 0),
       100.0 * sum(g.finished) / sum(g.n), min(g.first), max(g.last), %s
FROM ({figures}) AS g
GROUP BY g.issuer_id, g.input_file_name
ON CONFLICT (issuer_id, name) DO UPDATE SET orders = excluded.orders,
    stage_counts = excluded.stage_counts, shipped = excluded.shipped,
    finished = excluded.finished, exceptions = excluded.exceptions,
    cancelled = excluded.cancelled, share_finished = excluded.share_finished,
    first_event_at = excluded.first_event_at, last_event_at = excluded.last_event_at,
    refreshed_at = excluded.refreshed_at
"""


def _files_refresh_sql(*, changed_since: dt.datetime | None, now: dt.datetime) -> int:
    orders = CardOrder.objects.exclude(input_file_name="")
    if changed_since is not None:
        # Every file whose name an updated order carries (of any issuer: harmless extra work).
        changed = CardOrder.objects.filter(updated_at__gte=changed_since).exclude(
            input_file_name=""
        )
        orders = orders.filter(input_file_name__in=changed.values("input_file_name"))
    figures, figure_params = _figures_rows(
        orders, ("issuer_id", "input_file_name")
    ).query.sql_with_params()
    params = [sorted(SHIPPED_OR_RETURNED_STATUSES), sorted(CANCELLED_STATUSES), now]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _FILES_SQL.format(figures=figures),
            [*params, *figure_params],
        )
        return cursor.rowcount


def _files_forecasts() -> dict[tuple[int, str], tuple]:
    rows = (
        OrderPrediction.objects.exclude(order__input_file_name="")
        .values("order__issuer_id", "order__input_file_name")
        .annotate(
            p50=Max("p50"),
            p90=Max("p90"),
            n=Count("pk"),
            late=Count("pk", filter=Q(likely_late=True)),
        )
        .order_by()
    )
    return {
        (row["order__issuer_id"], row["order__input_file_name"]): (
            row["p50"],
            row["p90"],
            row["n"],
            row["late"],
        )
        for row in rows
    }


FORECAST_FIELDS = ["predicted_p50", "predicted_p90", "predicted_orders", "likely_late_orders"]


def files_forecasts_refresh() -> int:
    """Bring every file's predicted dates and counts in line with the stored predictions;
    returns how many files changed.

    `predictions_refresh` does this itself on PostgreSQL (in the statement that writes the
    predictions); elsewhere it calls this: one grouped query over the predictions, and
    updates only where a figure differs.
    """
    current = _files_forecasts()
    changed = []
    for file in ProductionFile.objects.only("issuer_id", "name", *FORECAST_FIELDS):
        figures = current.get((file.issuer_id, file.name), (None, None, 0, 0))
        if tuple(getattr(file, f) for f in FORECAST_FIELDS) != figures:
            for name, value in zip(FORECAST_FIELDS, figures, strict=True):
                setattr(file, name, value)
            changed.append(file)
    ProductionFile.objects.bulk_update(changed, FORECAST_FIELDS, batch_size=500)
    return len(changed)


def files_matching(*, term: str, limit: int = 5) -> list[ProductionFile]:
    """Files whose name contains `term`, newest first: the search offers their pages."""
    term = term.strip()
    if not term:
        return []
    return list(
        ProductionFile.objects.filter(name__icontains=term)
        .select_related("issuer")
        .order_by("-first_event_at", "-pk")[:limit]
    )
