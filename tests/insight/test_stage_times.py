"""Sites x stages: spans from stage entry times; median and p90 per cell, hand-computed."""

from __future__ import annotations

import pytest
import time_machine
from django.test import Client

from tests.conftest import make_staff
from tests.fixtures.insight import DAY, HOUR, NOW, send_order
from tracking.admin.insight import granted_heatmap
from tracking.insight import stage_times
from tracking.insight.refresh import insight_refresh
from tracking.models import Issuer, StageSpan, StageStat
from tracking.services.roles import VIEWERS

pytestmark = pytest.mark.django_db


def ongoing_then_done(issuer, *, site: str, entered, hours: float):
    return send_order(
        issuer,
        [("CARD_PROD_ONGOING", entered), ("CARD_PROD_DONE", entered + hours * HOUR)],
        site=site,
    )


@pytest.fixture
def history(issuer):
    """Site A spent 1, 2, 3 and 10 h in CARD_PROD_ONGOING two days ago (and 100 h twelve days
    ago); site B 4 h twice; one order skipped CARD_PROD_ONGOING; three shipments delivered."""
    orders = {}
    for hours in (1, 2, 3, 10):
        orders[f"a{hours}"] = ongoing_then_done(
            issuer, site="SITE-A", entered=NOW - 2 * DAY, hours=hours
        )
    orders["a_old"] = ongoing_then_done(issuer, site="SITE-A", entered=NOW - 12 * DAY, hours=100)
    for name in ("b1", "b2"):
        orders[name] = ongoing_then_done(issuer, site="SITE-B", entered=NOW - 2 * DAY, hours=4)
    orders["gap"] = send_order(
        issuer,
        [("CARD_PROD_READY", NOW - 3 * DAY), ("CARD_PROD_DONE", NOW - 2 * DAY)],
        site="SITE-A",
    )
    for name, carrier, transit in (
        ("ups1", "ups", 24),
        ("ups2", "ups", 48),
        ("fedex", "fedex", 12),
    ):
        done = NOW - 4 * DAY
        orders[name] = send_order(
            issuer,
            [("CARD_PROD_DONE", done), ("CARD_SHIPPED", done + HOUR)],
            site="SITE-C",
            carrier=carrier,
            delivered_at=done + HOUR + transit * HOUR,
        )
    insight_refresh(now=NOW)
    return orders


def cell(kind: str, window: int, group: str, stage: str) -> StageStat:
    return StageStat.objects.get(kind=kind, window_days=window, group=group, stage=stage)


def test_percentile_interpolates_like_postgresql():
    assert stage_times.percentile([1, 2, 3, 10], 0.5) == 2.5
    assert stage_times.percentile([1, 2, 3, 10], 0.9) == pytest.approx(7.9)
    assert stage_times.percentile([5], 0.9) == 5


def test_time_in_stage_per_site_over_seven_days(history):
    a = cell("stage", 7, "SITE-A", "CARD_PROD_ONGOING")
    assert (a.count, a.p50_s, a.p90_s) == (4, 2.5 * 3600, pytest.approx(7.9 * 3600))
    b = cell("stage", 7, "SITE-B", "CARD_PROD_ONGOING")
    assert (b.count, b.p50_s, b.p90_s) == (2, 4 * 3600, 4 * 3600)
    # All sites: 1, 2, 3, 4, 4, 10 h.
    every = cell("stage", 7, stage_times.ALL_SITES, "CARD_PROD_ONGOING")
    assert (every.count, every.p50_s, every.p90_s) == (6, 3.5 * 3600, pytest.approx(7 * 3600))


def test_thirty_days_include_the_older_span(history):
    # 1, 2, 3, 10 and 100 h: the 100 h span ended more than 7 but fewer than 30 days ago.
    a = cell("stage", 30, "SITE-A", "CARD_PROD_ONGOING")
    assert (a.count, a.p50_s, a.p90_s) == (5, 3 * 3600, pytest.approx(64 * 3600))


def test_a_skipped_step_charges_no_stage(history):
    gap = history["gap"]
    assert gap.has_gap
    spans = StageSpan.objects.filter(order=gap)
    assert not spans.filter(duration_s__isnull=False).exists()
    assert not StageStat.objects.filter(group="SITE-A", stage="CARD_PROD_READY").exists()


def test_shipment_time_per_carrier(history):
    ups = cell("shipment", 7, "ups", "CARD_SHIPPED")
    assert (ups.count, ups.p50_s, ups.p90_s) == (2, 36 * 3600, pytest.approx(45.6 * 3600))
    fedex = cell("shipment", 7, "fedex", "CARD_SHIPPED")
    assert (fedex.count, fedex.p50_s) == (1, 12 * 3600)


def test_heatmap_cells_against_thresholds(history, settings):
    settings.RECONCILE_STAGE_THRESHOLDS = {
        **settings.RECONCILE_STAGE_THRESHOLDS,
        "CARD_PROD_ONGOING": 10 * 3600,
    }
    found = stage_times.heatmap(window_days=30)
    rows = dict(found.rows)
    assert found.rows[0][0] == stage_times.ALL_SITES
    ongoing = rows["SITE-A"][found.stages.index("CARD_PROD_ONGOING")]
    # Median 3 h of a 10 h threshold; p90 64 h is past it: amber.
    assert ongoing.ratio == pytest.approx(0.3)
    assert ongoing.p90_ratio == pytest.approx(6.4)
    assert ongoing.tone == "warning"
    assert rows["SITE-A"][found.stages.index("CARD_PROD_READY")] is None
    assert {c.group for c in found.carriers} == {"ups", "fedex"}


def test_cell_lists_the_orders_behind_it_slowest_first(history):
    spans = list(
        stage_times.cell_spans(window_days=7, now=NOW, stage="CARD_PROD_ONGOING", site="SITE-A")
    )
    assert [s.order_id for s in spans] == [history[f"a{h}"].pk for h in (10, 3, 2, 1)]


def test_refresh_is_incremental_and_idempotent(history, issuer):
    again = insight_refresh(now=NOW + HOUR)
    # Only orders updated since the last watermark (less the overlap) are looked at again.
    assert again.orders == 0 and not again.full
    before = StageStat.objects.get(
        kind="stage", window_days=7, group="SITE-B", stage="CARD_PROD_ONGOING"
    )
    assert before.count == 2
    ongoing_then_done(issuer, site="SITE-B", entered=NOW + HOUR, hours=6)
    later = insight_refresh(now=NOW + 8 * HOUR)
    assert later.orders == 1
    b = StageStat.objects.get(
        kind="stage", window_days=7, group="SITE-B", stage="CARD_PROD_ONGOING"
    )
    assert (b.count, b.p50_s) == (3, 4 * 3600)
    incremental = sorted(
        StageStat.objects.values_list("kind", "window_days", "group", "stage", "count", "p50_s")
    )
    insight_refresh(full=True, now=NOW + 8 * HOUR)
    full = sorted(
        StageStat.objects.values_list("kind", "window_days", "group", "stage", "count", "p50_s")
    )
    assert incremental == full


@pytest.mark.postgres
def test_postgresql_percentiles_match_the_hand_computed_ones(history):
    """On PostgreSQL the figures come from percentile_cont in SQL; the same values."""
    a = cell("stage", 7, "SITE-A", "CARD_PROD_ONGOING")
    assert (a.p50_s, a.p90_s) == (2.5 * 3600, pytest.approx(7.9 * 3600))
    found = stage_times.grouped_quantiles(
        StageSpan.objects.filter(stage="CARD_PROD_ONGOING", production_site="SITE-B"),
        keys=("production_site",),
        value="duration_s",
    )
    assert [(g.key, g.count, g.p50) for g in found] == [(("SITE-B",), 2, 4 * 3600)]


def spans_now() -> list[tuple]:
    return sorted(
        StageSpan.objects.values_list(
            "order_id", "stage", "entered_at", "left_at", "duration_s", "shipped_at", "to_ship_s"
        )
    )


def test_incremental_spans_are_those_of_a_full_rebuild(history, issuer):
    """An order that moves on gains a span; one that ships has every span's time to shipment
    filled in. The incremental run ends where a full rebuild does."""
    from tests.fixtures.backoffice import post_items

    a1 = history["a1"]
    event = a1.events.order_by("first_received_at").last().payload
    shipped = {**event, "status": "SUCCESSFUL", "details": {**event["details"]}}
    shipped["details"]["status"] = "CARD_SHIPPED"
    post_items(issuer, [shipped], NOW)
    moved = ongoing_then_done(issuer, site="SITE-B", entered=NOW, hours=0.5)
    insight_refresh(now=NOW + HOUR)
    incremental = spans_now()
    # a1 shipped at NOW, 2 days - 1 h after entering CARD_PROD_DONE (and 2 days after
    # entering CARD_PROD_ONGOING).
    a1_spans = {row[1]: row for row in incremental if row[0] == a1.pk}
    assert a1_spans["CARD_PROD_ONGOING"][5:] == (NOW, 2 * DAY.total_seconds())
    assert a1_spans["CARD_PROD_DONE"][5:] == (NOW, 2 * DAY.total_seconds() - 3600)
    assert [row[1] for row in incremental if row[0] == moved.pk] == ["CARD_PROD_ONGOING"]
    insight_refresh(full=True, now=NOW + HOUR)
    assert spans_now() == incremental


def test_a_user_granted_some_issuers_sees_the_heatmap_of_their_spans_only(history, issuer):
    other = Issuer.objects.create(issuer_id="BANKBBB001", name="Other Bank")
    ours = make_staff("ours", VIEWERS, issuers=[issuer])
    theirs = make_staff("theirs", VIEWERS, issuers=[other])
    for window in (7, 30):
        stored = stage_times.heatmap(window_days=window)
        live = granted_heatmap(ours, window_days=window, now=NOW)
        # All the spans are our issuer's: the live figures are the stored ones.
        assert live.rows == stored.rows
        assert live.carriers == stored.carriers
        nothing = granted_heatmap(theirs, window_days=window, now=NOW)
        assert nothing.rows == [] and nothing.carriers == []
    pages = {}
    for user in (ours, theirs):
        with time_machine.travel(NOW, tick=False):
            client = Client()
            client.force_login(user)
            pages[user] = client.get("/admin/tracking/productionfile/heatmap/", {"window": 30})
    assert "SITE-A" in pages[ours].content.decode()
    assert pages[theirs].status_code == 200
    assert "SITE-A" not in pages[theirs].content.decode()
