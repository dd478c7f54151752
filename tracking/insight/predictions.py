"""Predicted CARD_SHIPPED dates (p50 and p90) for open orders, and the "likely late" queue.

An open order in stage S, which it entered at time e, is predicted to ship at
    p50 = max(e + P50(S → shipped), now + P50(next stage → shipped))
    p90 = max(e + P90(S → shipped), now + P90(next stage → shipped), p50)
where P50/P90 are the median and p90 of the time from entering a stage to CARD_SHIPPED among
orders shipped in the last INSIGHT_PREDICTION_WINDOW_DAYS: from the same issuer and production
site when at least INSIGHT_MIN_HISTORY of them exist, else from the same site, else from all
sites. The second term keeps an order that is already late in its stage from being predicted in
the past: it still has the rest of the path ahead. No history, no prediction.

The figures come from `StageStat` (refreshed by `tracking.insight.refresh`); the same pure
`predict` runs in the backtest (`bench/prediction_backtest.py`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from tracking.domain.statuses import PRODUCE_PATH, SHIPPED_STATUS
from tracking.insight.stage_times import ALL_SITES, PRODUCTION_STAGES, percentile
from tracking.models import CardOrder, OrderPrediction, StageStat, StatKind

BATCH = 2000


class Basis:
    ISSUER_SITE = "issuer_site"
    SITE = "site"
    ALL = "all"

    LABELS = {
        ISSUER_SITE: "this issuer at this site",
        SITE: "this site",
        ALL: "all sites",
    }


@dataclass(frozen=True)
class Quantiles:
    count: int
    p50_s: float
    p90_s: float


NOTHING_LEFT = Quantiles(0, 0.0, 0.0)


@dataclass(frozen=True)
class Prediction:
    p50: dt.date
    p90: dt.date
    basis: str
    stage: str


@dataclass(frozen=True)
class PredictionsWritten:
    """What one `predictions_refresh` did: open orders predicted, and the rows it changed."""

    predicted: int
    written: int = 0
    removed: int = 0
    orders_dated: int = 0
    files_dated: int = 0


class History:
    """Time from each stage's entry to shipment, per (issuer, site), per site and overall."""

    def __init__(self, *, min_count: int) -> None:
        self.min_count = min_count
        self.by_issuer_site: dict[tuple, Quantiles] = {}
        self.by_site: dict[tuple, Quantiles] = {}
        self.by_stage: dict[str, Quantiles] = {}

    @classmethod
    def from_stats(cls, *, min_count: int | None = None) -> History:
        """The history the last refresh computed (`StageStat` rows of kind to_ship)."""
        history = cls(min_count=settings.INSIGHT_MIN_HISTORY if min_count is None else min_count)
        stats = StageStat.objects.filter(
            kind=StatKind.TO_SHIP, window_days=settings.INSIGHT_PREDICTION_WINDOW_DAYS
        )
        for stat in stats:
            found = Quantiles(stat.count, stat.p50_s, stat.p90_s)
            if stat.issuer_id is not None:
                history.by_issuer_site[(stat.issuer_id, stat.group, stat.stage)] = found
            elif stat.group == ALL_SITES:
                history.by_stage[stat.stage] = found
            else:
                history.by_site[(stat.group, stat.stage)] = found
        return history

    @classmethod
    def from_samples(
        cls, samples: Iterable[tuple[object, str, str, float]], *, min_count: int
    ) -> History:
        """From (issuer, site, stage, seconds from stage entry to shipment) samples."""
        history = cls(min_count=min_count)
        groups: dict[str, dict[tuple, list[float]]] = {
            "issuer_site": defaultdict(list),
            "site": defaultdict(list),
            "stage": defaultdict(list),
        }
        for issuer, site, stage, seconds in samples:
            groups["issuer_site"][(issuer, site, stage)].append(seconds)
            groups["site"][(site, stage)].append(seconds)
            groups["stage"][(stage,)].append(seconds)
        for name, target in (
            ("issuer_site", history.by_issuer_site),
            ("site", history.by_site),
            ("stage", history.by_stage),
        ):
            for key, values in groups[name].items():
                values.sort()
                found = Quantiles(len(values), percentile(values, 0.5), percentile(values, 0.9))
                target[key[0] if name == "stage" else key] = found
        return history

    def lookup(self, *, issuer_id, site: str, stage: str) -> tuple[str, Quantiles] | None:
        """The most specific figures with enough orders behind them, and which they are."""
        for basis, found in (
            (Basis.ISSUER_SITE, self.by_issuer_site.get((issuer_id, site, stage))),
            (Basis.SITE, self.by_site.get((site, stage))),
            (Basis.ALL, self.by_stage.get(stage)),
        ):
            if found is not None and found.count >= self.min_count:
                return basis, found
        return None


def predict(
    *,
    history: History,
    issuer_id,
    site: str,
    stage: str,
    entered_at: dt.datetime | None,
    now: dt.datetime,
) -> Prediction | None:
    """The predicted ship dates of an order in `stage` since `entered_at`, or None."""
    if stage not in PRODUCTION_STAGES or entered_at is None:
        return None
    found = history.lookup(issuer_id=issuer_id, site=site, stage=stage)
    if found is None:
        return None
    basis, here = found
    following = PRODUCE_PATH[PRODUCE_PATH.index(stage) + 1]
    rest = NOTHING_LEFT
    if following != SHIPPED_STATUS:
        after = history.lookup(issuer_id=issuer_id, site=site, stage=following)
        rest = after[1] if after else NOTHING_LEFT
    p50 = max(entered_at + _seconds(here.p50_s), now + _seconds(rest.p50_s))
    p90 = max(entered_at + _seconds(here.p90_s), now + _seconds(rest.p90_s), p50)
    return Prediction(_day(p50), _day(p90), basis, stage)


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def _day(moment: dt.datetime) -> dt.date:
    return timezone.localtime(moment).date()


def is_likely_late(prediction: Prediction | None, due_date: dt.date | None) -> bool:
    return prediction is not None and due_date is not None and prediction.p50 > due_date


def open_orders_q() -> Q:
    """Orders a prediction is made for: not final, in a stage before shipment."""
    return Q(is_terminal=False, production_status__in=PRODUCTION_STAGES)


# The "likely late" queue (open orders whose p50 passes their dueDate): tracking.domain.conditions.


def predictions_refresh(*, now: dt.datetime, history: History | None = None) -> PredictionsWritten:
    """Predict every open order from the current history, and bring the stored predictions,
    the orders' `predicted_ship_date` and the files' predicted figures in line with it.

    Writes only the predictions whose values changed and deletes those of orders no longer
    predicted (shipped, failed, or without history): on PostgreSQL in one statement, elsewhere
    in batches. Running it twice is harmless.
    """
    if history is None and connection.vendor == "postgresql":
        return _predictions_refresh_sql(now=now)
    history = history or History.from_stats()
    orders = CardOrder.objects.filter(open_orders_q()).order_by("pk")
    columns = (
        "pk",
        "issuer_id",
        "production_site",
        "production_status",
        "stage_entered_at",
        "due_date",
    )
    stored = {
        row[0]: row[1:]
        for row in OrderPrediction.objects.values_list(
            "order_id", "p50", "p90", "basis", "stage", "likely_late"
        )
    }
    predicted, written, last_pk = 0, 0, 0
    while True:
        batch = list(orders.filter(pk__gt=last_pk).values_list(*columns)[:BATCH])
        if not batch:
            break
        last_pk = batch[-1][0]
        rows = []
        for pk, issuer_id, site, status, entered_at, due_date in batch:
            prediction = predict(
                history=history,
                issuer_id=issuer_id,
                site=site,
                stage=status,
                entered_at=entered_at,
                now=now,
            )
            if prediction is None:
                continue
            predicted += 1
            late = is_likely_late(prediction, due_date)
            values = (prediction.p50, prediction.p90, prediction.basis, prediction.stage, late)
            if stored.pop(pk, None) == values:
                continue
            rows.append(
                OrderPrediction(
                    order_id=pk,
                    p50=prediction.p50,
                    p90=prediction.p90,
                    basis=prediction.basis,
                    stage=prediction.stage,
                    likely_late=late,
                    computed_at=now,
                )
            )
        OrderPrediction.objects.bulk_create(
            rows,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["order"],
            update_fields=["p50", "p90", "basis", "stage", "likely_late", "computed_at"],
        )
        written += len(rows)
    # What is left of the stored ones belongs to orders no longer predicted.
    gone = sorted(stored)
    with transaction.atomic():
        for start in range(0, len(gone), 500):
            OrderPrediction.objects.filter(order_id__in=gone[start : start + 500]).delete()
        dated = _orders_dated()
    from tracking.insight.production_files import files_forecasts_refresh

    return PredictionsWritten(predicted, written, len(gone), dated, files_forecasts_refresh())


def _orders_dated() -> int:
    """Copy each prediction's p50 to its order's `predicted_ship_date` (None where there is
    none); returns how many orders changed."""
    current = dict(OrderPrediction.objects.values_list("order_id", "p50"))
    shown = CardOrder.objects.filter(
        Q(predicted_ship_date__isnull=False) | Q(prediction__isnull=False)
    ).values_list("pk", "predicted_ship_date")
    by_date: dict[dt.date | None, list[int]] = defaultdict(list)
    for pk, date in shown:
        if current.get(pk) != date:
            by_date[current.get(pk)].append(pk)
    for date, pks in by_date.items():
        for start in range(0, len(pks), 500):
            CardOrder.objects.filter(pk__in=pks[start : start + 500]).update(
                predicted_ship_date=date
            )
    return sum(len(pks) for pks in by_date.values())


# PostgreSQL: `predict` for every open order in one statement. Each order's figures for its
# stage and for the next one are looked up at three levels (issuer and site, site, all sites)
# by hash joins on StageStat; the first level with enough orders wins, as in History.lookup.
# Computing is one pass over the open orders; writing is what costs, so only what changed is
# written: predictions that differ from the stored ones, those of orders no longer predicted
# (deleted), and the files' predicted figures. Every data-modifying part sees the tables as
# they were when the statement began.
_PREDICTIONS_SQL = """
WITH stat AS (
    SELECT issuer_id, "group", stage, p50_s, p90_s FROM tracking_stagestat
    WHERE kind = %(kind)s AND window_days = %(window)s AND count >= %(min_count)s
), open_order AS (
    SELECT o.id, o.issuer_id, o.input_file_name, o.production_site AS site,
           o.production_status AS stage, o.stage_entered_at AS entered, o.due_date,
           (%(following)s::text[])[array_position(%(stages)s::text[], o.production_status)]
               AS next_stage
    FROM tracking_cardorder o
    WHERE NOT o.is_terminal AND o.production_status = ANY(%(stages)s::text[])
      AND o.stage_entered_at IS NOT NULL
), figures AS (
    SELECT o.*,
           CASE WHEN a.p50_s IS NOT NULL THEN %(issuer_site)s
                WHEN b.p50_s IS NOT NULL THEN %(site)s ELSE %(all)s END AS basis,
           coalesce(a.p50_s, b.p50_s, c.p50_s) AS here50,
           coalesce(a.p90_s, b.p90_s, c.p90_s) AS here90,
           coalesce(d.p50_s, e.p50_s, f.p50_s, 0) AS rest50,
           coalesce(d.p90_s, e.p90_s, f.p90_s, 0) AS rest90
    FROM open_order o
    LEFT JOIN stat a ON a.issuer_id = o.issuer_id AND a."group" = o.site AND a.stage = o.stage
    LEFT JOIN stat b ON b.issuer_id IS NULL AND b."group" = o.site AND b."group" <> %(all_sites)s
                        AND b.stage = o.stage
    LEFT JOIN stat c ON c.issuer_id IS NULL AND c."group" = %(all_sites)s AND c.stage = o.stage
    LEFT JOIN stat d ON d.issuer_id = o.issuer_id AND d."group" = o.site
                        AND d.stage = o.next_stage
    LEFT JOIN stat e ON e.issuer_id IS NULL AND e."group" = o.site AND e."group" <> %(all_sites)s
                        AND e.stage = o.next_stage
    LEFT JOIN stat f ON f.issuer_id IS NULL AND f."group" = %(all_sites)s
                        AND f.stage = o.next_stage
), dated AS (
    SELECT id, issuer_id, input_file_name, basis, stage, due_date,
           greatest(entered + here50 * interval '1 second', %(now)s + rest50 * interval '1 second')
               AS at50,
           greatest(entered + here90 * interval '1 second', %(now)s + rest90 * interval '1 second',
                    entered + here50 * interval '1 second', %(now)s + rest50 * interval '1 second')
               AS at90
    FROM figures WHERE here50 IS NOT NULL
), computed AS MATERIALIZED (
    SELECT id, issuer_id, input_file_name, basis, stage,
           (at50 AT TIME ZONE %(tz)s)::date AS p50, (at90 AT TIME ZONE %(tz)s)::date AS p90,
           coalesce((at50 AT TIME ZONE %(tz)s)::date > due_date, false) AS likely_late
    FROM dated
), written AS (
    INSERT INTO tracking_orderprediction (order_id, p50, p90, basis, stage, likely_late,
                                          computed_at)
    SELECT c.id, c.p50, c.p90, c.basis, c.stage, c.likely_late, %(now)s
    FROM computed c LEFT JOIN tracking_orderprediction p ON p.order_id = c.id
    WHERE p.order_id IS NULL
       OR (p.p50, p.p90, p.basis, p.stage, p.likely_late)
          IS DISTINCT FROM (c.p50, c.p90, c.basis, c.stage, c.likely_late)
    ON CONFLICT (order_id) DO UPDATE SET p50 = excluded.p50, p90 = excluded.p90,
        basis = excluded.basis, stage = excluded.stage, likely_late = excluded.likely_late,
        computed_at = excluded.computed_at
    RETURNING order_id
), removed AS (
    DELETE FROM tracking_orderprediction p
    WHERE NOT EXISTS (SELECT 1 FROM computed c WHERE c.id = p.order_id)
    RETURNING p.order_id
), file_dates AS (
    SELECT issuer_id, input_file_name AS name, max(p50) AS p50, max(p90) AS p90,
           count(*) AS predicted, count(*) FILTER (WHERE likely_late) AS late
    FROM computed WHERE input_file_name <> '' GROUP BY issuer_id, input_file_name
), files_dated AS (
    UPDATE tracking_productionfile f SET predicted_p50 = x.p50, predicted_p90 = x.p90,
        predicted_orders = x.predicted, likely_late_orders = x.late
    FROM file_dates x
    WHERE f.issuer_id = x.issuer_id AND f.name = x.name
      AND (f.predicted_p50, f.predicted_p90, f.predicted_orders, f.likely_late_orders)
          IS DISTINCT FROM (x.p50, x.p90, x.predicted, x.late)
    RETURNING f.id
), files_undated AS (
    UPDATE tracking_productionfile f SET predicted_p50 = NULL, predicted_p90 = NULL,
        predicted_orders = 0, likely_late_orders = 0
    WHERE (f.predicted_p50 IS NOT NULL OR f.predicted_orders > 0)
      AND NOT EXISTS (SELECT 1 FROM file_dates x
                      WHERE x.issuer_id = f.issuer_id AND x.name = f.name)
    RETURNING f.id
)
SELECT (SELECT count(*) FROM computed), (SELECT count(*) FROM written),
       (SELECT count(*) FROM removed),
       (SELECT count(*) FROM files_dated) + (SELECT count(*) FROM files_undated)
"""


def _predictions_refresh_sql(*, now: dt.datetime) -> PredictionsWritten:
    params = {
        "kind": StatKind.TO_SHIP,
        "window": settings.INSIGHT_PREDICTION_WINDOW_DAYS,
        "min_count": settings.INSIGHT_MIN_HISTORY,
        "stages": list(PRODUCTION_STAGES),
        "following": [PRODUCE_PATH[PRODUCE_PATH.index(s) + 1] for s in PRODUCTION_STAGES],
        "issuer_site": Basis.ISSUER_SITE,
        "site": Basis.SITE,
        "all": Basis.ALL,
        "all_sites": ALL_SITES,
        "now": now,
        "tz": timezone.get_current_timezone_name(),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_PREDICTIONS_SQL, params)
        predicted, written, removed, files = cursor.fetchone()
        cursor.execute(_DIFFERING_DATES_SQL)
        differing = cursor.fetchall()
        dated = 0
        if differing:
            ids, dates = zip(*differing, strict=True)
            cursor.execute(_ORDER_DATES_SQL, [list(ids), list(dates)])
            dated = cursor.rowcount
        return PredictionsWritten(predicted, written, removed, dated, files)


# Then each order's copy of its p50 (`predicted_ship_date`, for sorting lists), where it
# differs from its prediction: open orders, and orders that still carry a date (those that
# just became final). The partial index `order_predicted_ship` holds exactly these orders, so
# finding them reads that index alone; only those that differ (usually a few hundred) are then
# locked and written, one primary-key probe each.
# An order locked by the webhook path is skipped rather than waited for (no lock waits, no
# deadlocks with ingestion): it changes anyway, and the next run copies its date.
_DIFFERING_DATES_SQL = """
SELECT c.id, p.p50 FROM tracking_cardorder c
LEFT JOIN tracking_orderprediction p ON p.order_id = c.id
WHERE (NOT c.is_terminal OR c.predicted_ship_date IS NOT NULL)
  AND c.predicted_ship_date IS DISTINCT FROM p.p50
"""
_ORDER_DATES_SQL = """
UPDATE tracking_cardorder o SET predicted_ship_date = l.p50
FROM (SELECT c.id, v.p50 FROM unnest(%s::bigint[], %s::date[]) AS v(id, p50)
      JOIN tracking_cardorder c ON c.id = v.id
      FOR UPDATE OF c SKIP LOCKED) AS l
WHERE o.id = l.id
"""


@dataclass(frozen=True)
class OrderForecast:
    """What the order page and the read API show: the dates, or why there are none."""

    p50: dt.date | None
    p90: dt.date | None
    basis: str
    likely_late: bool

    @property
    def range(self) -> list[dt.date] | None:
        return [self.p50, self.p90] if self.p50 and self.p90 else None


def order_forecast(order: CardOrder, *, live: bool = False) -> OrderForecast | None:
    """The prediction of an open order (None when shipped, final or without history).

    Lists read the stored prediction. With `live`, an order that moved on since the last
    refresh (or has no stored prediction yet) is predicted now from the same history.
    """
    if order.is_terminal or order.production_status not in PRODUCTION_STAGES:
        return None
    try:
        stored = order.prediction
    except OrderPrediction.DoesNotExist:
        stored = None
    if stored is not None and (stored.stage == order.production_status or not live):
        return OrderForecast(stored.p50, stored.p90, stored.basis, stored.likely_late)
    if not live:
        return None
    prediction = predict(
        history=History.from_stats(),
        issuer_id=order.issuer_id,
        site=order.production_site,
        stage=order.production_status,
        entered_at=order.stage_entered_at,
        now=timezone.now(),
    )
    if prediction is None:
        return None
    late = is_likely_late(prediction, order.due_date)
    return OrderForecast(prediction.p50, prediction.p90, prediction.basis, late)
