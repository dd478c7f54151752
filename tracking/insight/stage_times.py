"""Stage spans from the orders' stage entry times, and their median and p90 per site and carrier.

`spans_refresh` turns the stage entry times each order keeps (`CardOrder.stage_first_seen`, the
receipt time of each step's first notification) into compact `StageSpan` rows, for the orders
changed since the last refresh only. `stats_refresh` then computes the median and p90 of each
group of spans over the heat-map's windows into `StageStat`. Pages read `StageStat`: a handful of
rows, never the events.

Percentiles are PostgreSQL's `percentile_cont` (linear interpolation between the two nearest
values); on SQLite the same formula runs in Python over the sorted values.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Aggregate, Count, FloatField, Max, Min, QuerySet

from tracking.domain.carrier_status import DELIVERED as DELIVERED_CLASS
from tracking.domain.stage_limits import stage_threshold
from tracking.domain.statuses import PRODUCE_PATH, SHIPPED_STATUS
from tracking.models import CardOrder, OperationEvent, StageSpan, StageStat, StatKind

# The carrier's class of a delivery, whatever word it used (`tracking.domain.carrier_status`).
DELIVERED = DELIVERED_CLASS
# The stages an order spends time in before shipment, in path order (the heat-map's columns).
PRODUCTION_STAGES: tuple[str, ...] = PRODUCE_PATH[:-1]
BATCH = 2000
# The group of the figures over all sites (a site D1 did not name is "").
ALL_SITES = "*"
STATS_WORK_MEM = "256MB"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """`percentile_cont(fraction)` of values sorted ascending (linear interpolation)."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate `percentile_cont(f) WITHIN GROUP (ORDER BY x)`."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@dataclass(frozen=True)
class GroupQuantiles:
    key: tuple
    count: int
    p50: float
    p90: float


def grouped_quantiles(
    queryset: QuerySet, *, keys: Sequence[str], value: str
) -> list[GroupQuantiles]:
    """Count, median and p90 of `value` for each group of `keys` in `queryset` (one query)."""
    queryset = queryset.filter(**{f"{value}__isnull": False}).order_by()
    if connection.vendor == "postgresql":
        # count(*), not of the id: the statistics' queries then read their index alone.
        rows = queryset.values(*keys).annotate(
            n=Count("*"),
            q50=PercentileCont(value, fraction=0.5),
            q90=PercentileCont(value, fraction=0.9),
        )
        return [
            GroupQuantiles(tuple(row[k] for k in keys), row["n"], row["q50"], row["q90"])
            for row in rows
        ]
    groups: dict[tuple, list[float]] = defaultdict(list)
    rows = queryset.values_list(*keys, value).order_by(*keys, value)
    for row in rows.iterator(chunk_size=5000):
        groups[tuple(row[:-1])].append(row[-1])
    return [
        GroupQuantiles(key, len(values), percentile(values, 0.5), percentile(values, 0.9))
        for key, values in groups.items()
    ]


# ---------------------------------------------------------------------------- spans


@dataclass(frozen=True)
class Span:
    stage: str
    entered_at: dt.datetime
    left_at: dt.datetime | None
    shipped_at: dt.datetime | None

    @property
    def duration_s(self) -> float | None:
        if self.left_at is None or self.left_at < self.entered_at:
            return None
        return (self.left_at - self.entered_at).total_seconds()

    @property
    def to_ship_s(self) -> float | None:
        if self.shipped_at is None or self.shipped_at < self.entered_at:
            return None
        return (self.shipped_at - self.entered_at).total_seconds()


def order_spans(
    *, stage_first_seen: Mapping[str, str], delivered_at: dt.datetime | None
) -> list[Span]:
    """The spans of one order: each path stage it entered and left, or shipped from.

    A stage counts as left when the next stage of the path began; a skipped step (a gap) leaves
    the stage before it without a duration rather than charging it the missing step's time.
    CARD_SHIPPED's span ends at delivery: the carrier's shipment time.
    """
    seen = {
        s: dt.datetime.fromisoformat(stage_first_seen[s])
        for s in PRODUCE_PATH
        if s in stage_first_seen
    }
    shipped_at = seen.get(SHIPPED_STATUS)
    spans = []
    for index, stage in enumerate(PRODUCE_PATH):
        entered = seen.get(stage)
        if entered is None:
            continue
        if stage == SHIPPED_STATUS:
            if delivered_at is not None:
                spans.append(Span(stage, entered, delivered_at, shipped_at))
            continue
        span = Span(stage, entered, seen.get(PRODUCE_PATH[index + 1]), shipped_at)
        if span.duration_s is not None or span.to_ship_s is not None:
            spans.append(span)
    return spans


def spans_refresh(*, changed_since: dt.datetime | None) -> int:
    """Re-derive the spans of orders updated since `changed_since` (all orders when None).

    Writes `StageSpan` rows (deletes an order's old ones first), in batches of BATCH orders, each
    in its own transaction. Returns the number of orders processed. Running it twice is harmless.
    """
    if connection.vendor == "postgresql":
        return _spans_refresh_sql(changed_since=changed_since)
    orders = CardOrder.objects.order_by("pk")
    if changed_since is not None:
        orders = orders.filter(updated_at__gte=changed_since)
    columns = (
        "pk",
        "issuer_id",
        "production_site",
        "carrier",
        "stage_first_seen",
        "shipment_class",
        "shipment_status",
    )
    processed, last_pk = 0, 0
    while True:
        batch = list(orders.filter(pk__gt=last_pk).values_list(*columns)[:BATCH])
        if not batch:
            return processed
        last_pk = batch[-1][0]
        processed += len(batch)
        delivered = _delivered_at({row[0]: row[6] for row in batch if row[5] == DELIVERED})
        rows = []
        for pk, issuer_id, site, carrier, first_seen, _class, _word in batch:
            for span in order_spans(
                stage_first_seen=first_seen or {}, delivered_at=delivered.get(pk)
            ):
                rows.append(
                    StageSpan(
                        order_id=pk,
                        issuer_id=issuer_id,
                        production_site=site,
                        carrier=carrier if span.stage == SHIPPED_STATUS else "",
                        stage=span.stage,
                        entered_at=span.entered_at,
                        left_at=span.left_at,
                        duration_s=span.duration_s,
                        shipped_at=span.shipped_at,
                        to_ship_s=span.to_ship_s,
                    )
                )
        with transaction.atomic():
            StageSpan.objects.filter(order_id__in=[row[0] for row in batch]).delete()
            StageSpan.objects.bulk_create(rows, batch_size=1000)


# PostgreSQL: the same spans as `order_spans`, for the orders of one id range (and, in an
# incremental run, updated since %(since)s). %(pairs)s are (stage, next stage) of the path;
# CARD_SHIPPED's span ends at delivery.
_SPANS_SELECT = """
SELECT o.id AS order_id, o.issuer_id, o.production_site,
       CASE WHEN p.stage = %(shipped)s THEN o.carrier ELSE '' END AS carrier,
       p.stage, t.entered AS entered_at, t.left_at,
       CASE WHEN t.left_at >= t.entered THEN extract(epoch FROM t.left_at - t.entered) END
           AS duration_s,
       t.shipped AS shipped_at,
       CASE WHEN t.shipped >= t.entered THEN extract(epoch FROM t.shipped - t.entered) END
           AS to_ship_s
FROM tracking_cardorder o
CROSS JOIN (SELECT * FROM unnest(%(stages)s::text[], %(following)s::text[])) AS p(stage, next_stage)
CROSS JOIN LATERAL (
    SELECT (o.stage_first_seen ->> p.stage)::timestamptz AS entered,
           (o.stage_first_seen ->> %(shipped)s)::timestamptz AS shipped,
           CASE WHEN p.stage = %(shipped)s THEN
                CASE WHEN o.shipment_class = %(delivered)s THEN (
                    SELECT min(e.first_received_at) FROM tracking_operationevent e
                    WHERE e.order_id = o.id AND e.shipment_status = o.shipment_status) END
                ELSE (o.stage_first_seen ->> p.next_stage)::timestamptz END AS left_at
) AS t
WHERE o.id > %(after)s AND o.id <= %(upto)s AND {changed}
  AND t.entered IS NOT NULL
  AND CASE WHEN p.stage = %(shipped)s THEN t.left_at IS NOT NULL
           ELSE t.left_at >= t.entered OR t.shipped >= t.entered END
"""
_SPAN_COLUMNS = (
    "order_id, issuer_id, production_site, carrier, stage, entered_at, left_at, duration_s, "
    "shipped_at, to_ship_s"
)
_SPANS_SQL = f"INSERT INTO tracking_stagespan ({_SPAN_COLUMNS}) {_SPANS_SELECT}"
# An incremental run: most changed orders keep the spans they had (a new event usually adds
# one), so only spans that differ are deleted and only new ones inserted. Fewer dead rows also
# keep the span table's pages all-visible, which the statistics' index-only reads rely on.
_SAME_SPAN = (
    "s.order_id = f.order_id AND s.stage = f.stage AND "
    "(s.issuer_id, s.production_site, s.carrier, s.entered_at, s.left_at, s.duration_s, "
    "s.shipped_at, s.to_ship_s) IS NOT DISTINCT FROM "
    "(f.issuer_id, f.production_site, f.carrier, f.entered_at, f.left_at, f.duration_s, "
    "f.shipped_at, f.to_ship_s)"
)
_SPANS_CHANGED_SQL = f"""
WITH fresh AS MATERIALIZED ({_SPANS_SELECT}
), gone AS (
    DELETE FROM tracking_stagespan s
    USING tracking_cardorder o
    WHERE s.order_id = o.id AND o.id > %(after)s AND o.id <= %(upto)s
      AND o.updated_at >= %(since)s
      AND NOT EXISTS (SELECT 1 FROM fresh f WHERE {_SAME_SPAN})
)
INSERT INTO tracking_stagespan ({_SPAN_COLUMNS})
SELECT {_SPAN_COLUMNS} FROM fresh f
WHERE NOT EXISTS (SELECT 1 FROM tracking_stagespan s WHERE {_SAME_SPAN})
"""  # noqa: S608 (only the module's own SQL fragments are interpolated)
SQL_ID_RANGE = 100_000


def _spans_refresh_sql(*, changed_since: dt.datetime | None) -> int:
    """`spans_refresh` on PostgreSQL: one statement per range of ids (one range for a few
    changed orders); a full rebuild deletes each range's spans and inserts them again."""
    changed = "o.updated_at >= %(since)s" if changed_since is not None else "TRUE"
    params = {
        "stages": list(PRODUCE_PATH),
        "following": [*PRODUCE_PATH[1:], ""],
        "shipped": SHIPPED_STATUS,
        "delivered": DELIVERED,
        "since": changed_since,
    }
    orders = CardOrder.objects.all()
    if changed_since is not None:
        orders = orders.filter(updated_at__gte=changed_since)
    found = orders.aggregate(low=Min("pk"), high=Max("pk"), count=Count("pk"))
    low, high, processed = found["low"], found["high"], found["count"]
    if not processed:
        return 0
    # Few changed orders: one statement; a full rebuild: bounded transactions.
    step = SQL_ID_RANGE if changed_since is None else high - low + 1
    for after in range(low - 1, high, step):
        upto = after + step
        with transaction.atomic(), connection.cursor() as cursor:
            if changed_since is None:
                cursor.execute(
                    "DELETE FROM tracking_stagespan WHERE order_id > %s AND order_id <= %s",
                    [after, upto],
                )
                statement = _SPANS_SQL
            else:
                statement = _SPANS_CHANGED_SQL
            cursor.execute(
                statement.format(changed=changed), {**params, "after": after, "upto": upto}
            )
    return processed


def _delivered_at(delivered_words: dict[int, str]) -> dict[int, dt.datetime]:
    """When the carrier first reported delivery, per delivered order id (its delivered word as
    the carrier sent it): one query on the event index."""
    if not delivered_words:
        return {}
    rows = (
        OperationEvent.objects.filter(order_id__in=list(delivered_words))
        .values("order_id", "shipment_status")
        .annotate(at=Min("first_received_at"))
        .order_by()
    )
    return {
        row["order_id"]: row["at"]
        for row in rows
        if delivered_words[row["order_id"]] == row["shipment_status"]
    }


# ---------------------------------------------------------------------------- statistics


def stats_refresh(*, now: dt.datetime) -> int:
    """Recompute every `StageStat` row from the spans; returns the number of rows written.

    Time in stage per (site, stage) and per stage over all sites, shipment time per carrier,
    for each window of INSIGHT_WINDOWS (spans that ended inside it); and the time from each
    stage's entry to shipment per (issuer, site, stage), (site, stage) and stage, over
    INSIGHT_PREDICTION_WINDOW_DAYS (orders shipped inside it), for the predictions.
    """
    rows: list[StageStat] = []

    def add(kind: str, days: int, queryset: QuerySet, keys: Sequence[str], value: str) -> None:
        for found in grouped_quantiles(queryset, keys=keys, value=value):
            named = dict(zip(keys, found.key, strict=True))
            rows.append(
                StageStat(
                    kind=kind,
                    window_days=days,
                    group=named.get("production_site", named.get("carrier", ALL_SITES)),
                    issuer_id=named.get("issuer_id"),
                    stage=named["stage"],
                    count=found.count,
                    p50_s=found.p50,
                    p90_s=found.p90,
                    computed_at=now,
                )
            )

    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The percentiles sort each window's spans (millions of rows at 1M orders): in
            # memory rather than in temporary files, for these statements only.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = %s", [STATS_WORK_MEM])
        _stats_rows(now=now, add=add)
        StageStat.objects.all().delete()
        StageStat.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def _stats_rows(*, now: dt.datetime, add) -> None:
    spans = StageSpan.objects.all()
    for days in settings.INSIGHT_WINDOWS:
        ended = spans.filter(left_at__gte=now - dt.timedelta(days=days), left_at__lte=now)
        production = ended.filter(stage__in=PRODUCTION_STAGES)
        # Grouped by stage first: sorting the window's spans read from span_stage_left costs
        # less than walking span_site_stage_left, whose order (site first) fetches every span.
        add(StatKind.STAGE, days, production, ("stage", "production_site"), "duration_s")
        add(StatKind.STAGE, days, production, ("stage",), "duration_s")
        add(
            StatKind.SHIPMENT,
            days,
            ended.filter(stage=SHIPPED_STATUS),
            ("stage", "carrier"),
            "duration_s",
        )

    days = settings.INSIGHT_PREDICTION_WINDOW_DAYS
    shipped = spans.filter(
        shipped_at__gte=now - dt.timedelta(days=days),
        shipped_at__lte=now,
        stage__in=PRODUCTION_STAGES,
    )
    for keys in (
        ("stage", "issuer_id", "production_site"),
        ("stage", "production_site"),
        ("stage",),
    ):
        add(StatKind.TO_SHIP, days, shipped, keys, "to_ship_s")


# ---------------------------------------------------------------------------- the heat-map


@dataclass(frozen=True)
class Cell:
    group: str
    stage: str
    count: int
    p50_s: float
    p90_s: float
    threshold_s: float

    @property
    def ratio(self) -> float:
        """The median against the stage's threshold: 1.0 means half the orders reach it."""
        return self.p50_s / self.threshold_s if self.threshold_s else 0.0

    @property
    def p90_ratio(self) -> float:
        return self.p90_s / self.threshold_s if self.threshold_s else 0.0

    @property
    def tone(self) -> str:
        if self.ratio >= 1:
            return "danger"
        if self.ratio >= 0.5 or self.p90_ratio >= 1:
            return "warning"
        return "success"


@dataclass(frozen=True)
class HeatMap:
    window_days: int
    stages: tuple[str, ...]
    # (site, [cell or None per stage]); the all-sites row (ALL_SITES) first.
    rows: list[tuple[str, list[Cell | None]]]
    carriers: list[Cell]
    computed_at: dt.datetime | None


def shipment_threshold() -> dt.timedelta:
    return settings.INSIGHT_SHIPMENT_THRESHOLD


def heatmap(*, window_days: int) -> HeatMap:
    """Sites x stages and carriers for one window, from `StageStat` (one small query)."""
    stats = list(
        StageStat.objects.filter(
            kind__in=[StatKind.STAGE, StatKind.SHIPMENT], window_days=window_days
        ).order_by("group", "stage")
    )
    by_site: dict[str, dict[str, Cell]] = defaultdict(dict)
    carriers = []
    for stat in stats:
        if stat.kind == StatKind.SHIPMENT:
            threshold = shipment_threshold().total_seconds()
        else:
            threshold = stage_threshold(stat.stage).total_seconds()
        cell = Cell(stat.group, stat.stage, stat.count, stat.p50_s, stat.p90_s, threshold)
        if stat.kind == StatKind.SHIPMENT:
            carriers.append(cell)
        else:
            by_site[stat.group][stat.stage] = cell
    sites = sorted(by_site, key=lambda site: (site != ALL_SITES, site))
    rows = [(site, [by_site[site].get(stage) for stage in PRODUCTION_STAGES]) for site in sites]
    computed_at = max((s.computed_at for s in stats), default=None)
    return HeatMap(window_days, PRODUCTION_STAGES, rows, carriers, computed_at)


def cell_spans(
    *,
    window_days: int,
    now: dt.datetime,
    stage: str,
    site: str | None = None,
    carrier: str | None = None,
    limit: int = 200,
) -> QuerySet[StageSpan]:
    """The spans behind one heat-map cell, slowest first (at most `limit`)."""
    spans = StageSpan.objects.filter(
        stage=stage,
        left_at__gte=now - dt.timedelta(days=window_days),
        left_at__lte=now,
        duration_s__isnull=False,
    )
    if site is not None:
        spans = spans.filter(production_site=site)
    if carrier is not None:
        spans = spans.filter(carrier=carrier)
    return spans.select_related("order", "issuer").order_by("-duration_s", "pk")[:limit]
