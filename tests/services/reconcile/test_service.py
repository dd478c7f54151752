"""Reconciling one order against the D1 sandbox over real HTTP: recover, record, back off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.items import body, item
from tracking.models import (
    AuditEntry,
    CardOrder,
    EventSource,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
)
from tracking.services.audit import Actor
from tracking.services.reconcile import (
    order_reconcile,
    orders_due_for_reconcile,
    orders_reconcile_now,
)


@pytest.fixture
def post(issuer, post_notification):
    def send(*items):
        response = post_notification(body(*items))
        assert response.status_code == 204, response.content

    return send


def order_of(card_id: str) -> CardOrder:
    return CardOrder.objects.get(card_id=card_id)


def test_a_dropped_last_step_is_recovered_through_the_webhook_ingest_path(d1, post, order_state):
    steps = [
        item("rec-1", "CARD_PROD_REQUESTED"),
        item("rec-1", "DATA_PREPARED"),
        item("rec-1", "CARD_PROD_READY"),  # D1 sent it; the portal never got it
    ]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(*steps[:2])

    result = order_reconcile(order_id=order_of("rec-1").pk)

    assert result.outcome == "changed"
    assert order_state("rec-1")["production_status"] == "CARD_PROD_READY"
    attempt = ReconcileAttempt.objects.get()
    assert (attempt.http_status, attempt.items_received) == (200, 1)
    assert (attempt.status_before, attempt.status_after) == ("DATA_PREPARED", "CARD_PROD_READY")
    assert attempt.latency_ms is not None and len(attempt.correlation_id) == 32
    event = OperationEvent.objects.get(production_status="CARD_PROD_READY")
    assert event.source == EventSource.ON_DEMAND and event.outcome == "advanced"
    assert event.delivery == attempt.delivery
    assert (attempt.delivery.source, attempt.delivery.new_count) == (EventSource.ON_DEMAND, 1)
    order = order_of("rec-1")
    assert (order.last_reconcile_outcome, order.reconcile_attempts) == ("changed", 0)
    assert order.reconcile_next_at is None and order.last_reconciled_at is not None


def test_the_same_answer_twice_is_a_duplicate_and_changes_nothing(d1, post):
    steps = [item("rec-2", "CARD_PROD_REQUESTED"), item("rec-2", "DATA_PREPARED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(*steps)

    assert order_reconcile(order_id=order_of("rec-2").pk).outcome == "unchanged"
    event = OperationEvent.objects.get(production_status="DATA_PREPARED")
    assert (event.times_received, event.source) == (2, EventSource.WEBHOOK)
    delivery = NotificationDelivery.objects.get(source=EventSource.ON_DEMAND)
    assert (delivery.new_count, delivery.duplicate_count) == (0, 1)


def test_a_flag_is_cleared_once_d1_has_answered_and_stays_until_then(d1, post):
    steps = [
        item("rec-3", "CARD_PROD_REQUESTED"),
        item("rec-3", "DATA_PREPARED"),
        item("rec-3", "CARD_PROD_READY"),
        item("rec-3", "CARD_PROD_ONGOING"),
    ]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(steps[0], steps[3])  # two steps skipped: a gap
    order = order_of("rec-3")
    assert (order.needs_reconcile, order.reconcile_reason) == (True, "gap")

    d1.faults(script=[503, 503])  # the first call and its one retry
    failed = order_reconcile(order_id=order.pk)
    assert (failed.outcome, failed.http_status) == ("error", 503)
    assert "503" in ReconcileAttempt.objects.get(outcome="error").error
    assert order_of("rec-3").needs_reconcile is True

    answered = order_reconcile(order_id=order.pk)
    assert answered.outcome == "unchanged"  # D1 says ONGOING, which the portal already had
    order = order_of("rec-3")
    assert order.needs_reconcile is False and order.has_gap is True  # known, and shown
    assert ReconcileAttempt.objects.get(outcome="unchanged").reason == "gap"


def test_a_card_unknown_at_d1_is_recorded_as_not_found_and_keeps_its_flag(d1, post):
    post(item("rec-404", "CARD_PROD_REQUESTED"), item("rec-404", "CARD_PROD_ON_HOLD"))

    result = order_reconcile(order_id=order_of("rec-404").pk)

    assert (result.outcome, result.http_status) == ("not_found", 404)
    order = order_of("rec-404")
    assert order.needs_reconcile is True and order.reconcile_next_at > timezone.now()


def test_unchanged_answers_back_off_exponentially_up_to_the_cap(d1, post, settings):
    settings.RECONCILE_BACKOFF_BASE = timedelta(seconds=60)
    settings.RECONCILE_BACKOFF_CAP = timedelta(seconds=300)
    steps = [item("rec-4", "CARD_PROD_REQUESTED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(*steps)
    order_id = order_of("rec-4").pk

    waits = []
    for _ in range(5):
        order_reconcile(order_id=order_id)
        order = order_of("rec-4")
        waits.append(round((order.reconcile_next_at - order.last_reconciled_at).total_seconds()))
    assert waits == [60, 120, 240, 300, 300]
    assert order.reconcile_attempts == 5

    # Something new from D1 (a webhook) starts the count again.
    post(item("rec-4", "DATA_PREPARED"))
    order_reconcile(order_id=order_id)
    assert order_of("rec-4").reconcile_attempts == 1


def test_a_shipped_order_leaves_the_slow_cadence_once_delivery_is_recovered(
    d1, post, settings, time_machine
):
    settings.RECONCILE_SHIPPED_INTERVAL = timedelta(hours=12)
    steps = [
        item("rec-5", "CARD_SHIPPED", shipment_status="IN_TRANSIT"),
        item("rec-5", "CARD_SHIPPED", shipment_status="DELIVERED"),
    ]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(steps[0])
    shipped_at = timezone.now()
    time_machine.move_to(shipped_at + timedelta(hours=13), tick=False)
    assert list(orders_due_for_reconcile().values_list("card_id", flat=True)) == ["rec-5"]

    # Back to the real clock for the call: the sandbox refuses assertions from the future.
    time_machine.move_to(shipped_at, tick=True)
    assert order_reconcile(order_id=order_of("rec-5").pk).outcome == "changed"
    order = order_of("rec-5")
    assert (order.shipment_status, order.shipment_final) == ("DELIVERED", True)
    time_machine.move_to(shipped_at + timedelta(days=3), tick=False)
    assert not orders_due_for_reconcile().exists()


def test_a_task_that_comes_after_another_reconcile_makes_no_call(d1, post):
    steps = [item("rec-6", "CARD_PROD_REQUESTED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(*steps)
    queued_at = timezone.now()
    order_reconcile(order_id=order_of("rec-6").pk)
    calls = d1.stats()["status_requests"]["total"]

    late_copy = order_reconcile(order_id=order_of("rec-6").pk, unless_reconciled_since=queued_at)

    assert late_copy.outcome == "skipped"
    assert d1.stats()["status_requests"]["total"] == calls
    assert ReconcileAttempt.objects.count() == 1


def test_reconcile_now_queues_after_commit_and_the_task_records_who_asked(
    d1, post, staff_user, django_capture_on_commit_callbacks
):
    steps = [item("rec-7", "CARD_PROD_REQUESTED"), item("rec-7", "DATA_PREPARED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(steps[0])

    with django_capture_on_commit_callbacks(execute=True) as queued:
        orders_reconcile_now(order_ids=[order_of("rec-7").pk], actor=Actor(user=staff_user))

    assert len(queued) == 1
    attempt = ReconcileAttempt.objects.get()
    assert (attempt.trigger, attempt.requested_by, attempt.outcome) == (
        "staff",
        staff_user,
        "changed",
    )


def test_the_command_lists_due_orders_and_reconciles_them_inline(d1, post, capsys):
    steps = [item("rec-8", "CARD_PROD_REQUESTED"), item("rec-8", "CARD_PROD_DONE")]
    d1.truth_record(issuer_id=ISSUER_ID, items=[*steps, item("rec-8", "CARD_SHIPPED")])
    post(*steps)

    call_command("reconcile", "--due", "--dry-run")
    listing = capsys.readouterr().out
    assert "rec-8" in listing and "gap" in listing and "1 orders would be reconciled" in listing
    assert ReconcileAttempt.objects.count() == 0

    call_command("reconcile", "--due", "--inline")
    assert "Reconciled 1 orders: changed 1." in capsys.readouterr().out
    assert order_of("rec-8").production_status == "CARD_SHIPPED"
    assert ReconcileAttempt.objects.get().trigger == "command"
    (entry,) = AuditEntry.objects.filter(action="order.reconcile")
    assert (entry.username, entry.target_id) == ("manage.py reconcile", str(order_of("rec-8").pk))


def test_the_command_is_audited_like_staff(d1, post, capsys):
    steps = [item("rec-9", "CARD_PROD_REQUESTED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post(*steps)

    call_command("reconcile", str(order_of("rec-9").pk), "--inline")

    (entry,) = AuditEntry.objects.filter(action="order.reconcile")
    assert entry.username == "manage.py reconcile" and entry.user is None
    assert entry.target_id == str(order_of("rec-9").pk)
    assert entry.details == {"trigger": "command"}


def test_the_safety_net_task_under_its_old_name_folds_what_waits(post):
    from config.celery_app import app

    post(item("net-1", "CARD_PROD_REQUESTED"), item("net-1", "DATA_PREPARED"))
    # As after a crash between storing the events and folding them:
    OperationEvent.objects.update(applied_at=None, outcome="")
    CardOrder.objects.update(production_status="", production_rank=None)

    # Messages queued under the old name (and a schedule that still names it) still run: the
    # projector's sweep folds the waiting order.
    assert app.tasks["tracking.apply_pending_events"].apply().get() == 1

    assert order_of("net-1").production_status == "DATA_PREPARED"
    assert not OperationEvent.objects.filter(applied_at__isnull=True).exists()
