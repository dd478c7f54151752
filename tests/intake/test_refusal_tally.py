"""Calls refused at the gate are counted per source, minute and reason: a flood cannot fill a table.

Before, every refused call (429s included) inserted a delivery row. Now a caller that fails the
gate adds one to its source's counter for the minute; staff still see who, when, why and how
often, and the refused share of the alerts still counts every call.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

from tests.fixtures import spec_examples as spec
from tracking.models import NotificationDelivery, RefusalTally
from tracking.observability.alerts import alerts_current

pytestmark = pytest.mark.django_db

MINUTE = dt.datetime(2026, 11, 25, 12, 0, 5, tzinfo=dt.UTC)


@pytest.fixture
def bearer_required(settings):
    settings.D1_WEBHOOK_REQUIRE_BEARER = True
    settings.D1_AUTH_FAILURE_LIMIT = 20


def test_a_flood_of_refused_calls_adds_one_row_per_reason_a_minute(
    bearer_required, issuer, post_notification
):
    with time_machine.travel(MINUTE, tick=False):
        statuses = [
            post_notification(spec.E1, HTTP_AUTHORIZATION="Bearer guess").status_code
            for _ in range(30)
        ]

    assert statuses == [401] * 20 + [429] * 10
    assert not NotificationDelivery.objects.exists()
    tallies = {(t.status_code, t.error_code): t for t in RefusalTally.objects.all()}
    assert set(tallies) == {(401, "INVALID_TOKEN"), (429, "TOO_MANY_AUTH_FAILURES")}
    assert tallies[(401, "INVALID_TOKEN")].count == 20
    assert tallies[(429, "TOO_MANY_AUTH_FAILURES")].count == 10
    refused = tallies[(401, "INVALID_TOKEN")]
    assert refused.minute == MINUTE.replace(second=0)
    assert (refused.source, refused.issuer_id_in_path) == ("127.0.0.1", spec.ISSUER_ID)


def test_each_source_and_minute_has_its_own_count(bearer_required, issuer, post_notification):
    def refuse(address: str) -> None:
        response = post_notification(spec.E1, REMOTE_ADDR=address)
        assert response.status_code == 401

    with time_machine.travel(MINUTE, tick=False):
        refuse("192.0.2.7")
        refuse("192.0.2.8")
        # One IPv6 site holds a whole /64: its addresses share a counter.
        refuse("2001:db8:1:2::1")
        refuse("2001:db8:1:2:ffff::9")
    with time_machine.travel(MINUTE + dt.timedelta(minutes=1), tick=False):
        refuse("192.0.2.7")

    counts = {
        (t.minute.minute, t.source): t.count for t in RefusalTally.objects.filter(status_code=401)
    }
    assert counts == {
        (0, "192.0.2.7"): 1,
        (0, "192.0.2.8"): 1,
        (0, "2001:db8:1:2::/64"): 2,
        (1, "192.0.2.7"): 1,
    }


def test_a_card_number_in_the_path_of_a_refused_call_is_masked(
    bearer_required, db, post_notification
):
    assert post_notification(spec.E1, issuer_id="4111111111111111").status_code == 401

    assert RefusalTally.objects.get().issuer_id_in_path == "************1111"


def test_staff_see_the_refused_calls(bearer_required, issuer, post_notification, viewer_user):
    post_notification(spec.E1, REMOTE_ADDR="198.51.100.23")
    client = Client()
    client.force_login(viewer_user)

    page = client.get("/admin/tracking/refusaltally/")
    tally = RefusalTally.objects.get()
    detail = client.get(f"/admin/tracking/refusaltally/{tally.pk}/change/")
    edit = client.post(f"/admin/tracking/refusaltally/{tally.pk}/change/", {"count": 0})

    assert page.status_code == 200
    assert "198.51.100.23" in page.content.decode()
    assert "MISSING_TOKEN" in page.content.decode()
    assert detail.status_code == 200
    assert edit.status_code == 403
    assert RefusalTally.objects.get().count == 1


def test_the_refused_share_alert_counts_tallied_calls(issuer, settings):
    settings.ALERT_REFUSED_SHARE = 0.1
    settings.ALERT_REFUSED_MIN_DELIVERIES = 20
    now = MINUTE.replace(minute=30)
    for minute in range(1, 21):
        at = now - dt.timedelta(minutes=minute)
        NotificationDelivery.objects.create(
            issuer=issuer, issuer_id_in_path=issuer.issuer_id, received_at=at, status_code=204
        )
    RefusalTally.objects.create(
        minute=now - dt.timedelta(minutes=5),
        source="192.0.2.7",
        status_code=401,
        error_code="INVALID_TOKEN",
        count=10,
        first_at=now,
        last_at=now,
    )

    alert = next(a for a in alerts_current(now=now) if a.kind == "refused_share")

    assert "33%" in alert.message and "INVALID_TOKEN 10" in alert.message


def test_a_refusal_is_counted_after_its_answer_is_sent(bearer_required, issuer, post_notification):
    from tracking.infrastructure.signals import delivery_answered

    counted_when_answered: list[int] = []

    def answered(sender, **kwargs):  # the answer is decided: the count has not run yet
        counted_when_answered.append(RefusalTally.objects.count())

    delivery_answered.connect(answered, dispatch_uid="test-refusal-answered")
    try:
        response = post_notification(spec.E1, HTTP_AUTHORIZATION="Bearer guess")
    finally:
        delivery_answered.disconnect(dispatch_uid="test-refusal-answered")

    assert response.status_code == 401
    assert counted_when_answered == [0]
    assert RefusalTally.objects.get().count == 1  # counted once the response was sent


def test_work_queued_for_after_the_answer_survives_a_request_whose_end_is_never_signalled(
    bearer_required, issuer
):
    from django.core.signals import request_finished, request_started

    from tracking.infrastructure.after_response import after_response

    counted: list[str] = []
    request_started.send(sender=None)
    after_response(lambda: counted.append("first request's tally"))
    # No request_finished: the next request on this thread begins.
    request_started.send(sender=None)
    assert counted == ["first request's tally"]
    request_finished.send(sender=None)
