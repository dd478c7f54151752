"""Prometheus counters and histograms of things that happen, incremented where they happen.

A POST answered, an item received, a D1 call made: any layer may count one here, below the
surfaces. With `PROMETHEUS_MULTIPROC_DIR` set, every process writes them to its own
memory-mapped file in that folder and `/metrics` sums the files of the host
(prometheus-client's multiprocess mode); an increment is a few microseconds. The gauges read
from the database at scrape time, and the exposition, are `tracking.observability.metrics`.

This module chooses prometheus-client's storage, so it must be imported before the client.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

# prometheus-client picks its storage when it is first imported, so the folder must be known
# before that import (the gunicorn config or the unit file usually sets it already).
if getattr(settings, "PROMETHEUS_MULTIPROC_DIR", ""):
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", settings.PROMETHEUS_MULTIPROC_DIR)
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
else:  # set but empty means off; prometheus-client would otherwise take it as on
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from prometheus_client import Counter, Histogram

LABEL_MAX = 40
# Webhook answers are a few milliseconds; the tail (lock waits, a slow disk) is what matters.
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# From an event stored to its order folded (the projector); the target is under 1 s at p99.
FOLD_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
D1_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

NOTIFICATIONS = Counter(
    "portal_d1_notifications",
    "POSTs from D1 to the webhook, by the status answered and the reason (errorCode) of a refusal",
    ["status", "reason"],
)
NOTIFICATION_ITEMS = Counter(
    "portal_d1_notification_items",
    "Items received in parsed bodies: new (first copy stored, invalid ones included), "
    "duplicate (a copy of a stored item), rejected (invalid, kept with its reason)",
    ["outcome"],
)
WEBHOOK_DURATION = Histogram(
    "portal_d1_webhook_duration_seconds",
    "Time to answer D1's webhook POST, by status class",
    ["status_class"],
    buckets=WEBHOOK_BUCKETS,
)
FOLD_LAG = Histogram(
    "portal_ingest_fold_lag_seconds",
    "Time from an order's oldest stored-but-unfolded event to the projector folding the order",
    buckets=FOLD_LAG_BUCKETS,
)
RECONCILE_ATTEMPTS = Counter(
    "portal_reconcile_attempts",
    "On-demand productionStatus calls made by reconciliation, by outcome",
    ["outcome"],
)
D1_DURATION = Histogram(
    "portal_d1_api_duration_seconds",
    "Latency of D1's productionStatus during reconciliation, by outcome",
    ["outcome"],
    buckets=D1_BUCKETS,
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def label_value(value: object) -> str:
    return str(value or "")[:LABEL_MAX]


def notification_observe(
    *,
    status: int,
    error_code: str = "",
    new_count: int = 0,
    duplicate_count: int = 0,
    rejected_count: int = 0,
) -> None:
    """Count one answered POST and its items (the webhook's hot path: no I/O beyond mmap)."""
    NOTIFICATIONS.labels(str(status), label_value(error_code) or "accepted").inc()
    if new_count:
        NOTIFICATION_ITEMS.labels("new").inc(new_count)
    if duplicate_count:
        NOTIFICATION_ITEMS.labels("duplicate").inc(duplicate_count)
    if rejected_count:
        NOTIFICATION_ITEMS.labels("rejected").inc(rejected_count)


def webhook_duration_observe(*, status: int, seconds: float) -> None:
    WEBHOOK_DURATION.labels(f"{status // 100}xx").observe(seconds)


def fold_lag_observe(*, seconds: float) -> None:
    FOLD_LAG.observe(max(seconds, 0.0))


def reconcile_attempt_observe(*, outcome: str, seconds: float | None) -> None:
    """Count one on-demand call of reconciliation and, when it reached D1, its latency."""
    RECONCILE_ATTEMPTS.labels(label_value(outcome) or "unknown").inc()
    if seconds is not None:
        D1_DURATION.labels(label_value(outcome) or "unknown").observe(seconds)
