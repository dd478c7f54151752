"""Retention: `manage.py prune` removes old rows by the policy and never changes an order."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.services.reconcile.items import body, item
from tracking.domain.fold import derive_order_state
from tracking.domain.ordering import EventFacts
from tracking.models import (
    AuditEntry,
    CardOrder,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
    RefusalTally,
)
from tracking.services.retention import comparable_state

pytestmark = pytest.mark.django_db

PATH = [
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
]
DUE = "2026-03-09"


def _feed(post_notification, card_id: str, *, late_site: str = "") -> None:
    """A full PRODUCE path, a late copy of an earlier step with other content, then delivery."""
    for status in PATH:
        assert post_notification(body(item(card_id, status))).status_code == 204
    shipped = item(card_id, "CARD_SHIPPED", shipment_status="IN_TRANSIT", due_date=DUE)
    assert post_notification(body(shipped)).status_code == 204
    # Arrives after the shipment: stale. Its dueDate is overridden by the shipped step's, so
    # the fold does not need it; one with a production site nobody else sends is still needed.
    late = item(card_id, "DATA_PREPARED", due_date=DUE)
    if late_site:
        late["details"]["productionSite"] = late_site
    assert post_notification(body(late)).status_code == 204
    delivered = item(card_id, "CARD_SHIPPED", shipment_status="DELIVERED", due_date=DUE)
    assert post_notification(body(delivered)).status_code == 204


def _folded(order: CardOrder) -> dict:
    events = OperationEvent.objects.filter(order=order).values_list(
        "id", "fingerprint", "first_received_at", "last_received_at", "payload"
    )
    return comparable_state(derive_order_state(EventFacts(*row) for row in events))


def _age_everything(days: int) -> None:
    """Make every row `days` old, as if the orders had finished that long ago."""
    then = timezone.now() - dt.timedelta(days=days)
    CardOrder.objects.update(last_event_at=then)
    NotificationDelivery.objects.update(received_at=then)


def _prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


def test_prune_compacts_finished_orders_without_changing_their_state(
    issuer, post_notification, settings
):
    settings.RETENTION_FINISHED_ORDER_DAYS = 30
    _feed(post_notification, "card-redundant")
    _feed(post_notification, "card-needed", late_site="SITE-LATE")
    # An open order is never compacted, however old.
    for status, due in (
        ("CARD_PROD_REQUESTED", "2026-03-08"),
        ("DATA_PREPARED", "2026-03-08"),
        ("CARD_PROD_REQUESTED", "2026-03-07"),
    ):
        assert post_notification(body(item("card-open", status, due_date=due))).status_code == 204
    _age_everything(days=31)
    orders = list(CardOrder.objects.order_by("card_id"))
    before = {order.card_id: _folded(order) for order in orders}
    columns = {o.card_id: (o.production_status, o.due_date, o.event_count) for o in orders}
    counts = {o.card_id: OperationEvent.objects.filter(order=o).count() for o in orders}
    assert OperationEvent.objects.filter(outcome="stale").count() == 3

    dry = _prune("--dry-run")
    assert "would remove 1 events" in dry
    assert OperationEvent.objects.count() == sum(counts.values())

    out = _prune()

    assert "removed 1 events" in out
    assert "events compacted in 1 finished order(s)" in out
    after = {o.card_id: _folded(o) for o in CardOrder.objects.order_by("card_id")}
    assert after == before  # every order re-folds to the state it had
    remaining = {o.card_id: OperationEvent.objects.filter(order=o).count() for o in orders}
    assert remaining == {**counts, "card-redundant": counts["card-redundant"] - 1}
    # The order rows themselves are untouched (status, due date, items received).
    assert {
        o.card_id: (o.production_status, o.due_date, o.event_count) for o in CardOrder.objects.all()
    } == columns
    # Every production step is still on the timeline.
    steps = set(
        OperationEvent.objects.filter(order__card_id="card-redundant").values_list(
            "production_status", flat=True
        )
    )
    assert steps == {*PATH, "CARD_SHIPPED"}
    assert "removed 0 events" in _prune()  # running twice is harmless


def test_recent_finished_orders_are_left_whole(issuer, post_notification, settings):
    settings.RETENTION_FINISHED_ORDER_DAYS = 30
    _feed(post_notification, "card-recent")
    stored = OperationEvent.objects.count()

    assert "removed 0 events" in _prune()
    assert OperationEvent.objects.count() == stored


def test_old_refused_and_copy_only_deliveries_go_but_provenance_stays(
    issuer, post_notification, settings
):
    settings.RETENTION_DELIVERY_DAYS = 7
    first = body(item("card-1", "CARD_PROD_REQUESTED"))
    assert post_notification(first).status_code == 204  # stores the event
    assert post_notification(first).status_code == 204  # a copy: stores nothing new
    assert post_notification(b'{"operations": [').status_code == 400  # refused, body kept
    assert NotificationDelivery.objects.count() == 3
    _age_everything(days=8)
    assert post_notification(first).status_code == 204  # a recent copy

    out = _prune()

    assert "removed 2 deliveries" in out
    kept = NotificationDelivery.objects.order_by("received_at")
    assert [d.new_count for d in kept] == [1, 0]  # the provenance of the event, and the recent
    assert OperationEvent.objects.get().delivery_id == kept[0].pk
    assert CardOrder.objects.get().production_status == "CARD_PROD_REQUESTED"


def test_audit_entries_are_kept_unless_a_retention_is_set(issuer, settings, staff_user):
    old = timezone.now() - dt.timedelta(days=4000)
    AuditEntry.objects.create(at=old, username="someone", action="order.reconcile")
    settings.RETENTION_RECONCILE_ATTEMPT_DAYS = 0

    _prune()
    assert AuditEntry.objects.filter(at=old).exists()

    settings.RETENTION_AUDIT_DAYS = 3650
    assert "removed 1 audit entries" in _prune()
    assert not AuditEntry.objects.filter(at=old).exists()


def test_old_reconcile_attempts_go(issuer, post_notification, settings):
    settings.RETENTION_RECONCILE_ATTEMPT_DAYS = 30
    post_notification(body(item("card-1", "CARD_PROD_REQUESTED")))
    order = CardOrder.objects.get()
    ReconcileAttempt.objects.create(
        order=order, outcome="unchanged", started_at=timezone.now() - dt.timedelta(days=31)
    )
    recent = ReconcileAttempt.objects.create(order=order, outcome="unchanged")

    assert "removed 1 reconcile attempts" in _prune()
    assert list(ReconcileAttempt.objects.all()) == [recent]


def test_old_refused_call_tallies_go(settings):
    settings.RETENTION_REFUSAL_TALLY_DAYS = 90
    now = timezone.now().replace(second=0, microsecond=0)
    for age in (91, 89):
        minute = now - dt.timedelta(days=age)
        RefusalTally.objects.create(
            minute=minute,
            source="198.51.100.9",
            status_code=401,
            error_code="UNAUTHORIZED",
            first_at=minute,
            last_at=minute,
        )

    assert "removed 1 refused-call tallies" in _prune()
    assert list(RefusalTally.objects.values_list("minute", flat=True)) == [
        now - dt.timedelta(days=89)
    ]


def test_the_beat_schedule_runs_prune_and_it_reports(settings):
    from tracking.services.retention import retention_prune_task

    assert settings.CELERY_BEAT_SCHEDULE["retention-prune"]["task"] == "tracking.retention_prune"
    lines = retention_prune_task()
    assert any(line.startswith("removed") for line in lines)
