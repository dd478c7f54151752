"""Asking D1, bounded, against the D1 sandbox over real HTTP: per-user and per-issuer rate limits
on look-up and "Ask D1 now" (a refused ask says when to retry and calls D1 for nothing), and "Ask
D1 now" on many orders as ONE capped job with its progress and ONE audit entry."""

from __future__ import annotations

import pytest
from celery.signals import task_prerun
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from tests.conftest import grant_every_issuer
from tests.fixtures.spec_examples import ISSUER_ID
from tracking.models import (
    AuditEntry,
    CardOrder,
    D1AskJob,
    Issuer,
    ReconcileAttempt,
)

pytestmark = pytest.mark.django_db

LOOK_UP = "/admin/tracking/cardorder/look-up/"


def operator(username: str) -> Client:
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    grant_every_issuer(user)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_cardorder", "reconcile_cardorder"])
    )
    client = Client()
    client.force_login(user)
    return client


def look_up(client: Client, card_id: str, issuer_id: str = ISSUER_ID):
    return client.post(LOOK_UP, {"issuer": issuer_id, "card_id": card_id})


def d1_calls(d1) -> int:
    return d1.stats().get("status_requests", {}).get("total", 0)


def test_a_user_s_look_ups_stop_at_their_rate_and_say_when_to_retry(d1, issuer, settings):
    settings.D1_ASK_RATE_PER_USER = 3
    clerk = operator("clerk")

    answers = [look_up(clerk, f"card-{n}") for n in range(5)]

    assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # D1: 404, shown on the page
    for refused in answers[3:]:
        assert refused.status_code == 429
        assert "try again in" in refused.content.decode()
    assert d1_calls(d1) == 3
    assert AuditEntry.objects.filter(action="order.look_up").count() == 3
    # Another user still may.
    assert look_up(operator("other"), "card-9").status_code == 200


def test_an_issuer_s_asks_stop_at_its_rate_whoever_asks(d1, issuer, settings):
    settings.D1_ASK_RATE_PER_USER = 100
    settings.D1_ASK_RATE_PER_ISSUER = 2
    Issuer.objects.create(issuer_id="ISSUERX002", name="Other Bank")
    first, second = operator("first"), operator("second")

    assert look_up(first, "card-1").status_code == 200
    assert look_up(second, "card-2").status_code == 200
    refused = look_up(second, "card-3")

    assert refused.status_code == 429
    assert f"Issuer {ISSUER_ID} has been asked" in refused.content.decode()
    assert look_up(second, "card-4", "ISSUERX002").status_code == 200  # its own window
    assert d1_calls(d1) == 3


def test_ask_d1_now_on_the_order_page_stops_at_the_user_s_rate(
    d1, issuer, settings, django_capture_on_commit_callbacks
):
    settings.D1_ASK_RATE_PER_USER = 1
    order = CardOrder.objects.create(issuer=issuer, card_id="card-1", operation_id="op-1")
    clerk = operator("clerk")
    url = f"/admin/tracking/cardorder/{order.pk}/reconcile/"

    with django_capture_on_commit_callbacks(execute=True):
        clerk.post(url)
        again = clerk.post(url, follow=True)

    assert "try again in" in again.content.decode()
    assert ReconcileAttempt.objects.filter(order=order).count() == 1
    assert d1_calls(d1) == 1


def test_a_bulk_ask_of_10000_orders_is_one_capped_job(
    d1, issuer, settings, django_capture_on_commit_callbacks
):
    settings.D1_BULK_ASK_MAX = 20
    settings.D1_BULK_ASK_PER_SECOND = 1000  # the pace is the setting's; tests need not wait
    CardOrder.objects.bulk_create(
        [
            CardOrder(issuer=issuer, card_id=f"bulk-{n:05d}", operation_id=f"op-{n:05d}")
            for n in range(10_000)
        ],
        batch_size=1000,
    )
    boss = Client()
    boss.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    started: list[str] = []

    def count(sender=None, **kwargs):
        started.append(sender.name)

    task_prerun.connect(count, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True) as queued:
            answer = boss.post(
                "/admin/tracking/cardorder/",
                {
                    "action": "reconcile_now_action",
                    "select_across": "1",
                    "index": "0",
                    "_selected_action": [CardOrder.objects.first().pk],
                },
                follow=True,
            )
    finally:
        task_prerun.disconnect(count)

    html = answer.content.decode()
    assert "Asked D1 about 20 order(s)" in html
    assert "Only the first 20 of the 10000 selected orders" in html
    assert len(queued) == 1  # one task after commit, not 10,000
    assert started == ["tracking.d1_ask_job"]
    job = D1AskJob.objects.get()
    assert (job.selected, job.total, job.done + job.failed, job.status) == (10_000, 20, 20, "done")
    assert ReconcileAttempt.objects.count() == 20
    assert d1_calls(d1) == 20
    audit = AuditEntry.objects.filter(action__startswith="order").exclude(action="orders.register")
    assert list(audit.values_list("action", flat=True)) == ["orders.reconcile_bulk"]
    details = audit.get().details
    assert {k: details[k] for k in ("selected", "asked", "cap")} == {
        "selected": 10_000,
        "asked": 20,
        "cap": 20,
    }
    assert details["orders"] == job.order_ids
    # Its progress on its page.
    page = boss.get(f"/admin/tracking/d1askjob/{job.pk}/change/").content.decode()
    assert "20 of 20 orders asked" in page
