"""The insight refresh: spans, stage statistics, predictions and production files, in that order.

Run by beat every INSIGHT_REFRESH_INTERVAL (and by `manage.py insight_refresh`). Incremental:
only orders updated since the last run (less an overlap for transactions that committed late)
get their spans and files recomputed; statistics and predictions are recomputed whole from the
compact span table. Idempotent: a second run, or two at once, writes the same rows.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from tracking.models import RollupState
from tracking.services import predictions, production_files, stage_times

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


def insight_refresh(*, full: bool = False, now: dt.datetime | None = None) -> RefreshResult:
    """Bring every insight rollup up to date; `full` recomputes all orders' spans and files.

    Writes StageSpan, StageStat, OrderPrediction, ProductionFile and the RollupState watermark.
    """
    began = time.perf_counter()
    now = now or timezone.now()
    state, _ = RollupState.objects.get_or_create(name=ROLLUP)
    since = None if full or state.watermark is None else state.watermark - OVERLAP
    orders = stage_times.spans_refresh(changed_since=since)
    stats = stage_times.stats_refresh(now=now)
    predicted = predictions.predictions_refresh(now=now)
    files = production_files.files_refresh(changed_since=since, now=now)
    production_files.files_forecasts_refresh()
    seconds = time.perf_counter() - began
    with transaction.atomic():
        RollupState.objects.filter(pk=state.pk).update(
            watermark=now, refreshed_at=timezone.now(), seconds=seconds
        )
    return RefreshResult(orders, stats, predicted, files, seconds, since is None)


def last_refresh() -> RollupState | None:
    return RollupState.objects.filter(name=ROLLUP).first()
