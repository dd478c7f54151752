"""The admin's front page: the dashboard figures, their charts, and the list behind each number."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tracking.admin.filters import NONE
from tracking.domain import labels
from tracking.models import Issuer, NotificationDelivery
from tracking.observability.alerts import Alert, alerts_current
from tracking.selectors import order_queues
from tracking.selectors.dashboard import DashboardFigures, dashboard_figures
from tracking.selectors.figures import DAY, TERMINAL_GROUPS, WEEK
from tracking.services.issuer_grants import ALL, issuers_granted

PRIMARY = "#2563eb"
DANGER = "#dc2626"
WARNING = "#ea580c"
NEUTRAL = "#64748b"


def _changelist(model: str, **params: Any) -> str:
    try:
        url = reverse(f"admin:tracking_{model}_changelist")
    except NoReverseMatch:
        return ""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{url}?{query}" if query else url


def orders_url(**params: Any) -> str:
    return _changelist("cardorder", **params)


def _chart_options(
    *,
    stacked: bool = False,
    percent_axis: bool = False,
    skip_labels: bool = True,
    y_title: str = "items",
) -> dict:
    axis_colour = "#64748b"
    options: dict[str, Any] = {
        "animation": False,
        "responsive": True,
        "maintainAspectRatio": False,
        "plugins": {
            "legend": {
                "display": True,
                "position": "top",
                "align": "start",
                "labels": {"color": axis_colour, "usePointStyle": True, "boxWidth": 8},
            },
            "tooltip": {"enabled": True},
        },
        "scales": {
            "x": {
                "stacked": stacked,
                "ticks": {"color": axis_colour, "autoSkip": skip_labels, "maxRotation": 40},
                "grid": {"display": False},
            },
            "y": {
                "stacked": stacked,
                "beginAtZero": True,
                "ticks": {"color": axis_colour, "precision": 0},
                "title": {"display": True, "text": y_title, "color": axis_colour},
            },
        },
        # An hour without items has no rate: drawn as a gap, never as 0 %.
        "spanGaps": False,
    }
    if percent_axis:
        options["scales"]["y1"] = {
            "position": "right",
            "beginAtZero": True,
            "suggestedMax": 10,
            "grid": {"drawOnChartArea": False},
            "ticks": {"color": axis_colour},
            "title": {"display": True, "text": _("% of the hour's items"), "color": axis_colour},
        }
    return options


def _short_stage(status: str) -> str:
    """CARD_PROD_ONGOING -> "Being personalised": the stage's label (tracking.domain.labels)."""
    return labels.label_text("production_status", status)


def _stage_chart(figures: DashboardFigures) -> dict:
    stages = figures.stages
    return {
        "labels": [_short_stage(s.status) for s in stages],
        "datasets": [
            {
                "label": _("Within the stage's threshold"),
                "data": [s.orders - (s.stuck or 0) for s in stages],
                "backgroundColor": PRIMARY,
                "borderRadius": 4,
            },
            {
                "label": _("Stuck beyond threshold"),
                "data": [s.stuck or 0 for s in stages],
                "backgroundColor": DANGER,
                "borderRadius": 4,
            },
        ],
    }


def _hourly_chart(figures: DashboardFigures) -> dict:
    def pct(value: float | None) -> float | None:
        return round(100 * value, 2) if value is not None else None

    labels_ = [timezone.localtime(h.hour).strftime("%H:00") for h in figures.hours]
    if labels_:
        labels_[-1] += " (now)"
    return {
        "labels": labels_,
        "datasets": [
            {
                "type": "bar",
                "label": _("Items received (orders' updates)"),
                "data": [h.items for h in figures.hours],
                "backgroundColor": PRIMARY,
                "yAxisID": "y",
                "order": 2,
            },
            {
                "type": "line",
                "label": _("Duplicate rate (%)"),
                "data": [pct(h.duplicate_rate) for h in figures.hours],
                "borderColor": WARNING,
                "backgroundColor": WARNING,
                "yAxisID": "y1",
                "pointStyle": "triangle",
                "pointRadius": 3,
                "order": 1,
            },
            {
                "type": "line",
                "label": _("Out-of-order rate (%)"),
                "data": [pct(h.stale_rate) for h in figures.hours],
                "borderColor": DANGER,
                "backgroundColor": DANGER,
                "borderDash": [6, 4],
                "yAxisID": "y1",
                "pointStyle": "rectRot",
                "pointRadius": 3,
                "order": 1,
            },
        ],
    }


def _hour_links(figures: DashboardFigures) -> list[dict]:
    rows = []
    for hour in figures.hours:
        window = {
            "received_at__gte": hour.hour.isoformat(),
            "received_at__lt": (hour.hour + dt.timedelta(hours=1)).isoformat(),
        }
        rows.append(
            {
                "hour": hour,
                "deliveries_url": _changelist("notificationdelivery", **window),
                "duplicates_url": _changelist("notificationdelivery", duplicates="yes", **window),
                "refused_url": _changelist("notificationdelivery", refused="yes", **window),
                "stale_url": _changelist(
                    "operationevent",
                    outcome="stale",
                    first_received_at__gte=window["received_at__gte"],
                    first_received_at__lt=window["received_at__lt"],
                ),
            }
        )
    return rows


TERMINAL_TITLES = {
    "shipped": _("Shipped"),
    "failed": _("Failed in production"),
    "cancelled": _("Cancelled"),
    "returned": _("Returned"),
}


def _terminal_url(group: str, window: str) -> str:
    if group == "failed":
        return orders_url(queue="failed", entered=window)
    if group == "cancelled":
        return orders_url(queue="cancelled", entered=window)
    return orders_url(production_status=TERMINAL_GROUPS[group][0], entered=window)


def _alert_url(alert: Alert) -> str:
    """The list an operator opens to act on an alert."""
    if alert.kind == "orders_stuck":
        return orders_url(production_status=alert.subject, stage_age="stuck")
    if alert.kind == "reconcile_failing":
        return orders_url(queue="reconcile")
    if alert.kind == "inbound_silence" and alert.silent_orders and alert.value == 0:
        return orders_url(queue="silent")
    if alert.kind in ("inbound_silence", "refused_share"):
        return _changelist("notificationdelivery")
    if alert.kind == "sweep_late":
        return _changelist("reconcileattempt")
    return orders_url(queue="open")


def last_notifications(*, now: dt.datetime, issuers: QuerySet | None = None) -> list[dict]:
    """Per active issuer (of `issuers`, all by default): when D1 last posted (any answer), how
    long ago, and the list link.

    One indexed probe per issuer (issuers are few): the newest webhook delivery.
    """
    rows = []
    shown = Issuer.objects.all() if issuers is None else issuers
    for issuer in shown.filter(is_active=True).only("pk", "issuer_id", "name"):
        last = (
            NotificationDelivery.objects.filter(issuer=issuer, source="webhook")
            .order_by("-received_at")
            .values_list("received_at", flat=True)
            .first()
        )
        rows.append(
            {
                "issuer": issuer,
                "at": last,
                "age": (now - last) if last else None,
                "url": _changelist("notificationdelivery", q=issuer.issuer_id),
            }
        )
    return rows


DASHBOARD_CACHE_KEY = "admin:dashboard-reads"


def dashboard_reads(user=None) -> tuple:
    """The figures, the alerts and each issuer's last notification, as of one moment, counting
    only the issuers `user` is granted (every issuer without a user).

    Kept DASHBOARD_CACHE_SECONDS in the shared cache, so that staff with the page open (it
    refreshes itself) share one set of about thirty queries; staff with the same grant share
    one entry. The page says as of when. A cache that is away only costs reading the database
    again.
    """
    granted = ALL if user is None else issuers_granted(user)
    if granted is not ALL and not Issuer.objects.exclude(issuer_id__in=granted).exists():
        granted = ALL  # granted every issuer there is: the whole picture, alerts included
    issuers = None if granted is ALL else Issuer.objects.filter(issuer_id__in=sorted(granted))
    key = DASHBOARD_CACHE_KEY
    if granted is not ALL:
        key += ":" + hashlib.sha256(" ".join(sorted(granted)).encode()).hexdigest()
    ttl = settings.DASHBOARD_CACHE_SECONDS
    if ttl > 0:
        try:
            cached = cache.get(key)
        except Exception:
            ttl, cached = 0, None
        if cached is not None:
            return cached
    figures = dashboard_figures(now=timezone.now(), issuers=issuers)
    alerts = alerts_current(now=figures.now)
    if granted is not ALL:
        # Alerts about an issuer outside the grant, or counting every issuer, are not shown.
        alerts = [alert for alert in alerts if alert.subject in granted]
    reads = (figures, alerts, last_notifications(now=figures.now, issuers=issuers))
    if ttl > 0:
        with contextlib.suppress(Exception):
            cache.set(key, reads, ttl)
    return reads


def dashboard_callback(request: HttpRequest, context: dict) -> dict:
    """unfold's DASHBOARD_CALLBACK: add the figures for staff who may view orders."""
    if not request.user.has_perm("tracking.view_cardorder"):
        return context
    figures, alerts, last = dashboard_reads(request.user)
    stage_rows = [
        {
            "stage": stage,
            # The Open queue in that stage: the same rule as the count.
            "orders_url": orders_url(queue="open", production_status=stage.status or NONE),
            "stuck_url": orders_url(production_status=stage.status, stage_age="stuck")
            if stage.stuck is not None
            else "",
        }
        for stage in figures.stages
    ]
    terminal_rows = [
        {
            "title": title,
            "statuses": TERMINAL_GROUPS[group],
            "counts": figures.terminal[group],
            "urls": {window: _terminal_url(group, window) for window in ("24h", "7d")},
        }
        for group, title in TERMINAL_TITLES.items()
    ]
    queue_rows = [
        {"queue": queue, "count": figures.queues.get(key, 0), "url": orders_url(queue=key)}
        for key, queue in order_queues.QUEUES.items()
    ]
    context.update(
        {
            "queue_rows": queue_rows,
            "alerts": [{"alert": alert, "url": _alert_url(alert)} for alert in alerts],
            "dashboard": figures,
            "stage_rows": stage_rows,
            "terminal_rows": terminal_rows,
            "hour_rows": list(reversed(_hour_links(figures))),
            "links": {
                # Every queue's list, by its key (`order_queues.QUEUES`).
                **{key: orders_url(queue=key) for key in order_queues.QUEUES},
                "deliveries_24h": _changelist(
                    "notificationdelivery",
                    received_at__gte=figures.hours[0].hour.isoformat(),
                ),
                "reconcile_changed_24h": _changelist(
                    "reconcileattempt",
                    outcome="changed",
                    started_at__gte=(figures.now - DAY).isoformat(),
                ),
                "reconcile_changed_7d": _changelist(
                    "reconcileattempt",
                    outcome="changed",
                    started_at__gte=(figures.now - WEEK).isoformat(),
                ),
                "reconcile_attempts": _changelist(
                    "reconcileattempt", started_at__gte=(figures.now - WEEK).isoformat()
                ),
            },
            "stage_chart": json.dumps(_stage_chart(figures), cls=DjangoJSONEncoder),
            "stage_chart_options": _chart_json(
                _chart_options(stacked=True, skip_labels=False, y_title="orders")
            ),
            "last_notifications": last,
            "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
            "hourly_chart": json.dumps(_hourly_chart(figures), cls=DjangoJSONEncoder),
            "hourly_chart_options": _chart_json(_chart_options(percent_axis=True)),
        }
    )
    return context


def _chart_json(value) -> str:
    # The charts' words are translated lazily; the encoder writes them in the reader's language.
    return json.dumps(value, cls=DjangoJSONEncoder)
