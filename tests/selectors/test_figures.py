"""The admin's dashboard and /metrics show the same open, stuck and terminal figures.

Both read `tracking.selectors.figures`; these tests seed orders of every status class and stage
(the realistic back office, some stuck, some ended by D1 at a step that is not a final stage),
then compare every figure the two share, and the stuck alerts with them.
"""

from __future__ import annotations

import pytest
from django.db.models import Q
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tests.admin.conftest import backoffice_data, bo_issuer, orders  # noqa: F401 (fixtures)
from tests.admin.test_dashboard_figures import every_class  # noqa: F401 (fixture)
from tracking.domain.statuses import FAILED_PRODUCTION_STATUSES
from tracking.models import CardOrder
from tracking.observability.alerts import alerts_current
from tracking.selectors.dashboard import dashboard_figures
from tracking.selectors.figures import TERMINAL_GROUPS, stage_figures

pytestmark = pytest.mark.django_db


@pytest.fixture
def metrics(settings):
    """The gauges of a /metrics scrape: {metric name: {label value: value}} (zeros left out)."""
    settings.METRICS_TOKEN = "scraper-token"
    settings.METRICS_DB_CACHE_SECONDS = 0

    def scrape() -> dict[str, dict[str, float]]:
        response = Client(HTTP_AUTHORIZATION="Bearer scraper-token").get("/metrics")
        assert response.status_code == 200
        found: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                label = sample.labels.get("production_status")
                if label is not None and sample.value:
                    found.setdefault(sample.name, {})[label] = sample.value
        return found

    return scrape


@pytest.fixture
def seeded(every_class, settings):  # noqa: F811
    """Every class of order, with a threshold low enough that several stages hold stuck ones."""
    settings.RECONCILE_STAGE_THRESHOLDS = {
        **settings.RECONCILE_STAGE_THRESHOLDS,
        "CARD_PROD_REQUESTED": 3600,
        "CARD_PROD_ONGOING": 3600,
    }
    return every_class


def test_open_and_stuck_orders_per_stage_agree_on_the_dashboard_and_metrics(seeded, metrics):
    dashboard = dashboard_figures(now=timezone.now())
    gauges = metrics()

    shown_open = {s.status or "none": s.orders for s in dashboard.stages if s.orders}
    shown_stuck = {s.status or "none": s.stuck for s in dashboard.stages if s.stuck}
    assert shown_open == gauges["portal_orders"]
    assert shown_stuck == gauges["portal_orders_past_threshold"]
    assert dashboard.open_orders == sum(gauges["portal_orders"].values())
    assert dashboard.total_stuck == sum(gauges["portal_orders_past_threshold"].values())
    # The data is not trivial: open orders in several stages, some of them stuck.
    assert len(shown_open) >= 3 and len(shown_stuck) >= 2
    assert "none" in shown_open  # an order known only by a hold code


def test_terminal_orders_agree_on_the_dashboard_and_metrics(seeded, metrics):
    dashboard = dashboard_figures(now=timezone.now())
    terminal = metrics()["portal_orders_finished_24h"]

    # The groups of one status each are that status's gauge.
    for name in ("shipped", "returned", "cancelled"):
        (status,) = TERMINAL_GROUPS[name]
        assert dashboard.terminal[name]["24h"] == terminal.get(status, 0), name
    # Failed: the failed production statuses, and operations D1 ended FAILED at a normal step;
    # what the four groups leave out is only what D1 ended SUCCESSFUL before shipping.
    exceptions = sum(terminal.get(status, 0) for status in FAILED_PRODUCTION_STATUSES)
    in_groups = sum(counts["24h"] for counts in dashboard.terminal.values())
    ended_early = CardOrder.objects.filter(
        is_terminal=True, operation_status="SUCCESSFUL", production_status="CARD_PROD_DONE"
    ).count()
    assert dashboard.terminal["failed"]["24h"] >= exceptions
    assert in_groups + ended_early == sum(terminal.values())
    assert dashboard.terminal["failed"]["24h"] > 0 and dashboard.terminal["shipped"]["7d"] > 0
    # Every open order stands in a stage that both count.
    assert dashboard.open_orders == CardOrder.objects.filter(is_terminal=False).count()


def test_the_stuck_alerts_count_what_the_dashboard_shows(seeded, settings):
    settings.ALERT_STUCK_MIN_ORDERS = 1
    now = timezone.now()
    stages = {s.status or "none": s.stuck for s in dashboard_figures(now=now).stages if s.stuck}
    alerted = {a.subject: a.value for a in alerts_current(now=now) if a.kind == "orders_stuck"}
    assert alerted == stages


def test_a_grant_narrows_every_figure_to_its_issuers(seeded):
    from tracking.models import Issuer

    now = timezone.now()
    every_issuer = stage_figures(now=now, granted=Q(issuer__in=Issuer.objects.values("pk")))
    everybody = stage_figures(now=now)
    assert every_issuer == everybody
    none_granted = dashboard_figures(now=now, issuers=Issuer.objects.none())
    assert none_granted.open_orders == 0 and none_granted.total_stuck == 0
    assert all(counts == {"24h": 0, "7d": 0} for counts in none_granted.terminal.values())
