"""The insight refresh: spans, stage statistics, production files, predictions, in that order.

Run by beat every INSIGHT_REFRESH_INTERVAL (`insight_refresh_task`, at the end) and by
`manage.py insight_refresh`. Incremental: only orders updated since the last run (less an
overlap for transactions that committed late) get their spans and files recomputed; statistics
are recomputed whole from the compact span table; every open order is predicted again (a
prediction moves with the clock, not only with its order), but only the predictions, order dates
and file dates that changed are written. Idempotent: a second run, or two at once, writes the
same rows.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from tracking.insight import predictions, production_files, stage_times
from tracking.models import RollupState

ROLLUP = "insight"
# Orders committed by a transaction that began before the last run's watermark are still seen.
OVERLAP = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class RefreshResult:
    orders: int
    stats: int
    predictions: int
    files: int
    seconds: float
    full: bool
    # Of the predictions: how many were written (new or changed) and deleted this run.
    predictions_written: int = 0
    predictions_removed: int = 0
    # Seconds per phase: spans, statistics, files, predictions.
    phases: dict[str, float] = field(default_factory=dict)


def insight_refresh(*, full: bool = False, now: dt.datetime | None = None) -> RefreshResult:
    """Bring every insight rollup up to date; `full` recomputes all orders' spans and files.

    Writes StageSpan, StageStat, ProductionFile, OrderPrediction (with the orders'
    `predicted_ship_date` and the files' predicted dates) and the RollupState watermark.
    """
    began = time.perf_counter()
    now = now or timezone.now()
    state, _ = RollupState.objects.get_or_create(name=ROLLUP)
    since = None if full or state.watermark is None else state.watermark - OVERLAP
    phases: dict[str, float] = {}

    def timed(name, run):
        started = time.perf_counter()
        found = run()
        phases[name] = time.perf_counter() - started
        return found

    orders = timed("spans", lambda: stage_times.spans_refresh(changed_since=since))
    stats = timed("statistics", lambda: stage_times.stats_refresh(now=now))
    files = timed("files", lambda: production_files.files_refresh(changed_since=since, now=now))
    # After the files, so that a file seen for the first time gets its predicted dates now.
    predicted = timed("predictions", lambda: predictions.predictions_refresh(now=now))
    seconds = time.perf_counter() - began
    with transaction.atomic():
        RollupState.objects.filter(pk=state.pk).update(
            watermark=now, refreshed_at=timezone.now(), seconds=seconds
        )
    return RefreshResult(
        orders,
        stats,
        predicted.predicted,
        files,
        seconds,
        since is None,
        predictions_written=predicted.written,
        predictions_removed=predicted.removed,
        phases=phases,
    )


def last_refresh() -> RollupState | None:
    return RollupState.objects.filter(name=ROLLUP).first()


@shared_task(name="tracking.insight_refresh")
def insight_refresh_task() -> int:
    """Refresh the stage statistics, predictions and production files (incremental)."""
    return insight_refresh().orders
