"""/metrics: the gauges read from the database at scrape time, and the exposition of every metric.

Two kinds of metrics, so that the numbers are right however many gunicorn workers and Celery
processes run:

- counters and histograms of things that happen are `tracking.infrastructure.metrics`,
  incremented where they happen and summed over the host's processes at scrape time.
- gauges of the current state (open orders per stage, stuck orders, orders finished and items
  stored in the last 24 hours, the oldest unapplied item, time since an issuer's last
  notification, time since the last sweep, active alerts) are computed from the database when
  `/metrics` is scraped, so every instance reports the same truth. The order figures are
  `tracking.selectors.figures`, the admin dashboard's. None of them reads the whole history
  (totals since the beginning are the counters' job), so a scrape costs the same at ten million
  items as at a thousand. They are cached for `METRICS_DB_CACHE_SECONDS` in the shared cache.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from django.conf import settings

# First: it chooses prometheus-client's storage before the client is imported.
from tracking.infrastructure.metrics import label_value, multiprocess_enabled

# isort: split
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- scrape-time gauges


class DatabaseCollector(Collector):
    """Gauges of the current state, read from the database (and cached) at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.core.cache import cache
        from django.db import DatabaseError

        ttl = settings.METRICS_DB_CACHE_SECONDS
        try:
            snapshot = cache.get(_SNAPSHOT_KEY) if ttl > 0 else None
        except Exception:  # the shared cache is away: read the database directly
            ttl, snapshot = 0, None
        if snapshot is None:
            try:
                snapshot = state_snapshot()
            except DatabaseError:
                # The counters are still worth scraping while the database is away.
                logger.warning("metrics: database-derived gauges unavailable", exc_info=True)
                yield GaugeMetricFamily(
                    "portal_database_up", "1 when the gauges could be read from the database", 0
                )
                return
            if ttl > 0:
                with contextlib.suppress(Exception):  # a cache outage only costs a re-read
                    cache.set(_SNAPSHOT_KEY, snapshot, ttl)
        yield GaugeMetricFamily(
            "portal_database_up", "1 when the gauges could be read from the database", 1
        )
        yield from _families(snapshot)


# Versioned: a snapshot cached by an older release (other keys) is never read by this one.
_SNAPSHOT_KEY = "observability:metrics-snapshot:2"


def state_snapshot() -> dict:
    """The numbers behind the gauges, as plain data (so that they can be cached)."""
    from tracking.observability.alerts import alerts_current
    from tracking.observability.state import operations_state

    state = operations_state()
    return {
        "taken_at": time.time(),
        "orders_by_stage": state.orders_by_stage,
        "terminal_by_stage": state.terminal_by_stage,
        "stuck_by_stage": state.stuck_by_stage,
        "needs_reconcile_by_reason": state.needs_reconcile_by_reason,
        "events_by_outcome": state.events_by_outcome,
        "unapplied_count": state.unapplied_count,
        "unapplied_oldest_age": state.unapplied_oldest_age,
        "issuer_silence": state.issuer_silence,
        "sweep_age": state.sweep_age,
        "alerts": [(a.kind, a.subject, a.severity) for a in alerts_current(state=state)],
    }


def _families(snapshot: dict) -> Iterator[GaugeMetricFamily]:
    family = GaugeMetricFamily(
        "portal_orders",
        "Open card orders (not in a final stage) by current production status",
        labels=["production_status"],
    )
    for stage, count in sorted(snapshot["orders_by_stage"].items()):
        family.add_metric([label_value(stage) or "none"], count)
    yield family

    family = GaugeMetricFamily(
        "portal_orders_finished_24h",
        "Card orders that ended in the last 24 hours (a final stage, or D1 ended it), by stage",
        labels=["production_status"],
    )
    for stage, count in sorted(snapshot["terminal_by_stage"].items()):
        family.add_metric([label_value(stage) or "none"], count)
    yield family

    family = GaugeMetricFamily(
        "portal_orders_past_threshold",
        "Orders in a non-terminal stage longer than RECONCILE_STAGE_THRESHOLDS allows",
        labels=["production_status"],
    )
    for stage, count in sorted(snapshot["stuck_by_stage"].items()):
        family.add_metric([label_value(stage) or "none"], count)
    yield family

    family = GaugeMetricFamily(
        "portal_orders_needing_reconcile",
        "Orders flagged for reconciliation, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(snapshot["needs_reconcile_by_reason"].items()):
        family.add_metric([label_value(reason) or "none"], count)
    yield family

    family = GaugeMetricFamily(
        "portal_items_24h",
        "Distinct notification items first stored in the last 24 hours, by what each did",
        labels=["outcome"],
    )
    for outcome, count in sorted(snapshot["events_by_outcome"].items()):
        family.add_metric([label_value(outcome) or "pending"], count)
    yield family

    yield GaugeMetricFamily(
        "portal_unapplied_items",
        "Items stored but not yet applied to their order",
        value=snapshot["unapplied_count"],
    )
    yield GaugeMetricFamily(
        "portal_unapplied_items_oldest_age_seconds",
        "Age of the oldest stored-but-unapplied item (0 when there is none)",
        value=snapshot["unapplied_oldest_age"] or 0.0,
    )

    family = GaugeMetricFamily(
        "portal_issuer_last_notification_age_seconds",
        "Seconds since the last accepted notification from each active issuer "
        "(since the issuer was registered when none came yet)",
        labels=["issuer"],
    )
    for issuer_id, age in sorted(snapshot["issuer_silence"].items()):
        family.add_metric([issuer_id], age)
    yield family

    if snapshot["sweep_age"] is not None:
        yield GaugeMetricFamily(
            "portal_reconcile_sweep_last_success_age_seconds",
            "Seconds since a reconcile sweep last finished without error",
            value=snapshot["sweep_age"],
        )

    family = GaugeMetricFamily(
        "portal_alert_active",
        "1 for each alert operators should see now (kind, subject, severity)",
        labels=["kind", "subject", "severity"],
    )
    for kind, subject, severity in snapshot["alerts"]:
        family.add_metric([kind, label_value(subject), severity], 1)
    yield family
    yield GaugeMetricFamily(
        "portal_snapshot_age_seconds",
        "How old the database-derived gauges of this scrape are",
        value=max(time.time() - snapshot["taken_at"], 0.0),
    )


def metrics_render() -> tuple[bytes, str]:
    """The exposition text of every metric of this host, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    # One process: its own counters (and the process collectors of the default registry).
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST
