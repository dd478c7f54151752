"""/metrics: what operators can read about the webhook and the orders, and who may read it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from tests.fixtures import spec_examples as spec
from tests.observability.conftest import samples, value
from tracking.models import CardOrder, Issuer, NotificationDelivery

pytestmark = pytest.mark.django_db


def test_webhook_answers_and_items_are_counted_by_outcome(issuer, post_notification, scrape):
    before = samples(scrape())

    assert post_notification(spec.E12).status_code == 204  # two new items
    assert post_notification(spec.E12).status_code == 204  # the same two again
    bad = {**spec.E1["operations"][0], "cardId": "not valid!"}
    assert post_notification({"operations": [spec.E1["operations"][0], bad]}).status_code == 204
    assert post_notification(b'{"operations": [').status_code == 400
    assert post_notification(spec.E1, issuer_id="NOSUCHISS1").status_code == 404

    after = samples(scrape())

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("portal_d1_notifications_total", status="204", reason="accepted") == 3
    assert delta("portal_d1_notifications_total", status="400", reason="PARSING_ERROR") == 1
    assert delta("portal_d1_notifications_total", status="404", reason="ISSUER_NOT_FOUND") == 1
    # An invalid item is stored too (as a new event with its reason) and counted as rejected.
    assert delta("portal_d1_notification_items_total", outcome="new") == 4
    assert delta("portal_d1_notification_items_total", outcome="duplicate") == 2
    assert delta("portal_d1_notification_items_total", outcome="rejected") == 1
    assert delta("portal_d1_webhook_duration_seconds_count", status_class="2xx") == 3
    assert delta("portal_d1_webhook_duration_seconds_count", status_class="4xx") == 2


def test_gauges_show_orders_per_stage_stuck_orders_and_item_outcomes(
    issuer, post_notification, scrape, settings
):
    settings.RECONCILE_STAGE_THRESHOLDS = {"CARD_PROD_REQUESTED": 3600}
    assert post_notification(spec.E1).status_code == 204
    assert post_notification(spec.E12).status_code == 204
    CardOrder.objects.filter(card_id=spec.E1["operations"][0]["cardId"]).update(
        stage_entered_at=timezone.now() - dt.timedelta(hours=2)
    )

    text = scrape()

    by_stage = {
        labels[0][1]: v
        for (name, labels), v in samples(text).items()
        if name == "portal_orders" and labels
    }
    assert by_stage["CARD_PROD_REQUESTED"] == 1
    assert sum(by_stage.values()) == CardOrder.objects.filter(is_terminal=False).count()
    finished = {
        labels[0][1]: v
        for (name, labels), v in samples(text).items()
        if name == "portal_orders_finished_24h" and labels
    }
    assert sum(finished.values()) + sum(by_stage.values()) == CardOrder.objects.count() == 3
    assert value(text, "portal_orders_past_threshold", production_status="CARD_PROD_REQUESTED") == 1
    assert value(text, "portal_items_24h", outcome="advanced") >= 1
    assert value(text, "portal_unapplied_items") == 0
    assert value(text, "portal_unapplied_items_oldest_age_seconds") == 0


def test_time_since_each_issuers_last_notification(issuer, post_notification, scrape):
    quiet = Issuer.objects.create(issuer_id="QUIETBANK1", name="Quiet Bank")
    Issuer.objects.filter(pk=quiet.pk).update(created_at=timezone.now() - dt.timedelta(hours=3))
    assert post_notification(spec.E1).status_code == 204
    NotificationDelivery.objects.update(received_at=timezone.now() - dt.timedelta(minutes=10))

    text = scrape()

    recent = value(text, "portal_issuer_last_notification_age_seconds", issuer=spec.ISSUER_ID)
    silent = value(text, "portal_issuer_last_notification_age_seconds", issuer="QUIETBANK1")
    assert 600 <= recent < 700
    assert 3 * 3600 <= silent < 3 * 3600 + 100


def test_metrics_are_refused_to_anonymous_callers_by_default():
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics").status_code == 403


def test_metrics_are_refused_to_other_networks_without_the_token(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    settings.METRICS_TOKEN = "scrape-secret"

    outsider = Client(REMOTE_ADDR="192.0.2.7")
    assert outsider.get("/metrics").status_code == 403
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    assert Client(REMOTE_ADDR="10.1.4.2").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


def test_reconcile_attempts_latency_and_sweep_age_are_exported(
    d1, issuer, post_notification, scrape
):
    from django.core.cache import cache

    from tests.services.reconcile.items import body, item
    from tracking.observability.state import SWEEP_LAST_SUCCESS_KEY
    from tracking.services.reconcile import reconcile_order_task, reconcile_sweep_task

    cache.delete(SWEEP_LAST_SUCCESS_KEY)

    steps = [item("met-1", "CARD_PROD_REQUESTED"), item("met-1", "DATA_PREPARED")]
    d1.truth_record(issuer_id=issuer.issuer_id, items=steps)
    assert post_notification(body(steps[0])).status_code == 204
    before = samples(scrape())
    assert "portal_reconcile_sweep_last_success_age_seconds" not in {n for n, _ in before}

    reconcile_order_task.delay(CardOrder.objects.get(card_id="met-1").pk)
    reconcile_sweep_task.delay()  # eager in tests: runs here and now

    after = samples(scrape())
    changed = value(after, "portal_reconcile_attempts_total", outcome="changed") - value(
        before, "portal_reconcile_attempts_total", outcome="changed"
    )
    assert changed == 1
    assert (
        value(after, "portal_d1_api_duration_seconds_count", outcome="changed")
        - value(before, "portal_d1_api_duration_seconds_count", outcome="changed")
        == 1
    )
    assert 0 <= value(after, "portal_reconcile_sweep_last_success_age_seconds") < 60


def test_every_order_is_counted_open_or_finished_whatever_step_d1_ended_it_at(
    issuer, post_notification, scrape
):
    def item(card, step, status, end=None):
        operation = {
            "operationId": f"op-{card}",
            "operation": "PRODUCE",
            "status": status,
            "startTime": "2026-03-02T09:15:04.120Z",
            "cardId": card,
            "details": {"status": step},
        }
        return {**operation, **({"endTime": end} if end else {})}

    end = "2026-03-03T10:00:00.000Z"
    batch = [
        item("card-open", "CARD_PROD_ONGOING", "PENDING"),
        # D1 ended these at a step that is not a final stage: finished, never open.
        item("card-done", "CARD_PROD_DONE", "SUCCESSFUL", end),
        item("card-failed", "CARD_PROD_READY", "FAILED", end),
        item("card-shipped", "CARD_SHIPPED", "SUCCESSFUL", end),
    ]
    assert post_notification({"operations": batch}).status_code == 204

    text = scrape()

    open_orders = {
        dict(labels)["production_status"]: v
        for (name, labels), v in samples(text).items()
        if name == "portal_orders" and labels and v
    }
    finished = {
        dict(labels)["production_status"]: v
        for (name, labels), v in samples(text).items()
        if name == "portal_orders_finished_24h" and labels and v
    }
    assert open_orders == {"CARD_PROD_ONGOING": 1}
    assert finished == {"CARD_PROD_DONE": 1, "CARD_PROD_READY": 1, "CARD_SHIPPED": 1}
    assert sum(open_orders.values()) + sum(finished.values()) == CardOrder.objects.count()
