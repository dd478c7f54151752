"""Reconciliation in the admin: the attempts list and its filters, the "Reconcile now" action."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.items import body, item
from tracking.admin.reconcile import reconcile_now_action
from tracking.models import CardOrder, D1AskJob, ReconcileAttempt
from tracking.services.reconcile import order_reconcile


@pytest.fixture
def boss(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-long-123")


@pytest.fixture
def attempts(d1, issuer, post_notification):
    """One order reconciled twice: changed (200), then D1 failing (503)."""
    steps = [item("adm-1", "CARD_PROD_REQUESTED"), item("adm-1", "DATA_PREPARED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    post_notification(body(steps[0]))
    order = CardOrder.objects.get(card_id="adm-1")
    order_reconcile(order_id=order.pk)
    d1.faults(script=[503, 503])
    order_reconcile(order_id=order.pk)
    return order


def test_attempts_list_filters_by_outcome_and_http_status(client, boss, attempts):
    client.force_login(boss)

    everything = client.get("/admin/tracking/reconcileattempt/")
    changed = client.get("/admin/tracking/reconcileattempt/?outcome__exact=changed")
    failing = client.get("/admin/tracking/reconcileattempt/?http_status=503")

    assert everything.status_code == changed.status_code == failing.status_code == 200
    assert len(everything.context["cl"].result_list) == 2
    assert [a.outcome for a in changed.context["cl"].result_list] == ["changed"]
    assert [a.http_status for a in failing.context["cl"].result_list] == [503]


def test_attempts_are_read_only_evidence(client, boss, attempts):
    client.force_login(boss)
    attempt = ReconcileAttempt.objects.first()

    page = client.get(f"/admin/tracking/reconcileattempt/{attempt.pk}/change/")

    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.get("/admin/tracking/reconcileattempt/add/").status_code == 403


def test_reconcile_now_action_queues_one_job_for_the_selected_orders(
    issuer, post_notification, boss, django_capture_on_commit_callbacks
):
    for card in ("adm-2", "adm-3"):
        post_notification(body(item(card, "CARD_PROD_REQUESTED")))
    request = RequestFactory().post("/admin/tracking/cardorder/")
    request.user = boss
    request.session = {}
    request._messages = FallbackStorage(request)

    with django_capture_on_commit_callbacks() as queued:
        reconcile_now_action(admin.site._registry[CardOrder], request, CardOrder.objects.all())

    assert len(queued) == 1  # one job, which walks the orders at D1's pace
    assert "Asked D1 about 2 order(s)" in str(next(iter(get_messages(request))))
    job = D1AskJob.objects.get()
    assert (job.selected, job.total, job.order_ids) == (
        2,
        2,
        sorted(CardOrder.objects.values_list("pk", flat=True)),
    )
