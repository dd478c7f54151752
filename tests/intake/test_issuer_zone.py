"""Times D1 sends without a zone are read in the issuer's zone and flagged; every time is kept."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.services.reconcile.items import item
from tracking.models import CardOrder, Issuer

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser("lead", "lead@example.com", "lead-pw")
    client = Client()
    client.force_login(user)
    return client


def test_a_zone_less_time_is_read_in_the_issuers_zone_and_flagged(
    issuer, post_notification, order_state, staff
):
    Issuer.objects.filter(pk=issuer.pk).update(time_zone="Asia/Tokyo")
    payload = item("zone-1", "CARD_PROD_REQUESTED")
    payload["startTime"] = "2026-03-02T18:00:00"  # 18:00 in Tokyo is 09:00 UTC
    assert post_notification({"operations": [payload]}).status_code == 204

    assert order_state("zone-1")["start_time"] == "2026-03-02T09:00:00Z"
    order = CardOrder.objects.get(card_id="zone-1")
    page = staff.get(f"/admin/tracking/cardorder/{order.pk}/change/").content.decode()
    assert "Zone assumed: Asia/Tokyo" in page
    assert "(zone assumed)" in page


def test_a_time_with_its_own_offset_is_not_flagged(issuer, post_notification, staff):
    Issuer.objects.filter(pk=issuer.pk).update(time_zone="Asia/Tokyo")
    payload = item("zone-2", "CARD_PROD_REQUESTED")
    payload["startTime"] = "2026-03-02T18:00:00+09:00"
    assert post_notification({"operations": [payload]}).status_code == 204
    order = CardOrder.objects.get(card_id="zone-2")
    page = staff.get(f"/admin/tracking/cardorder/{order.pk}/change/").content.decode()
    assert "Zone assumed" not in page


def test_the_default_zone_is_utc(issuer, post_notification, order_state):
    payload = item("zone-3", "CARD_PROD_REQUESTED")
    payload["startTime"] = "2026-03-02T18:00:00"
    assert post_notification({"operations": [payload]}).status_code == 204
    assert order_state("zone-3")["start_time"] == "2026-03-02T18:00:00Z"


def test_the_start_time_of_a_failed_answer_with_only_a_hold_code_is_kept(
    issuer, post_notification, order_state
):
    payload = item("hold-failed", "CARD_PROD_ON_HOLD")
    payload["status"] = "FAILED"
    payload["startTime"] = "2026-03-02T07:30:00.000+09:00"
    assert post_notification({"operations": [payload]}).status_code == 204
    order = order_state("hold-failed")
    assert order["start_time"] == "2026-03-01T22:30:00Z"
    assert order["is_terminal"] is True


def test_staff_set_the_zone_in_the_admin_and_a_wrong_name_is_refused(issuer, staff):
    form = {"issuer_id": issuer.issuer_id, "name": issuer.name, "is_active": "on"}
    refused = staff.post(
        f"/admin/tracking/issuer/{issuer.pk}/change/", {**form, "time_zone": "Mars/Olympus"}
    )
    assert refused.status_code == 200
    assert "not a time zone name" in refused.content.decode()
    saved = staff.post(
        f"/admin/tracking/issuer/{issuer.pk}/change/", {**form, "time_zone": "Europe/Paris"}
    )
    assert saved.status_code == 302
    assert Issuer.objects.get(pk=issuer.pk).time_zone == "Europe/Paris"
