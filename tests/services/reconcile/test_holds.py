"""Holds and unknown codes: shown while open, asking D1 until it answers or the operation ends;
an acknowledgement lasts until the exception itself changes. Through the webhook, the admin and
the D1 sandbox over real HTTP."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.items import body, item
from tracking.models import CardOrder
from tracking.services.reconcile import order_reconcile

pytestmark = pytest.mark.django_db

HOLD_REASON = "Stock item unavailable for product variant"


def hold(card_id: str, code: str = "CARD_PROD_ON_HOLD") -> dict:
    payload = item(card_id, code)
    payload["details"]["reason"] = HOLD_REASON
    return payload


def parcel(card_id: str, status: str, day: int) -> dict:
    payload = item(card_id, "CARD_SHIPPED", shipment_status=status)
    payload["endTime"] = f"2026-03-0{day}T10:00:00.000Z"
    return payload


@pytest.fixture
def post(issuer, post_notification):
    def send(*items):
        response = post_notification(body(*items))
        assert response.status_code == 204, response.content

    return send


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser("lead", "lead@example.com", "lead-pw")
    client = Client()
    client.force_login(user)
    return client


def test_an_open_hold_shows_its_code_and_reason_in_the_list_the_page_and_the_api(
    post, staff, order_state
):
    post(item("hold-1", "CARD_PROD_READY"), hold("hold-1"))

    order = order_state("hold-1")
    assert (order["hold_code"], order["hold_reason"]) == ("CARD_PROD_ON_HOLD", HOLD_REASON)
    # READY and the hold share D1's times: only D1 can say whether the hold came after it.
    assert (order["needs_reconcile"], order["reconcile_reason"]) == (True, "hold_then_progress")
    listing = staff.get("/admin/tracking/cardorder/").content.decode()
    assert "On hold" in listing and "CARD_PROD_ON_HOLD" in listing
    assert HOLD_REASON in listing
    page = staff.get(f"/admin/tracking/cardorder/{order['id']}/change/").content.decode()
    assert "On hold:" in page and HOLD_REASON in page


def test_an_unknown_code_stops_asking_once_d1_has_answered(d1, post, order_state):
    resumed = item("hold-2", "CARD_PROD_ONGOING")
    d1.truth_record(issuer_id=ISSUER_ID, items=[hold("hold-2"), resumed])
    post(item("hold-2", "CARD_PROD_READY"), hold("hold-2"))
    assert order_state("hold-2")["needs_reconcile"] is True

    order_reconcile(order_id=CardOrder.objects.get(card_id="hold-2").pk)

    order = order_state("hold-2")
    assert order["production_status"] == "CARD_PROD_ONGOING"
    assert order["needs_reconcile"] is False
    assert order["unknown_codes"] == ["CARD_PROD_ON_HOLD"]  # still on the record
    # Later news that is not a new code does not ask again; a new unknown code does.
    post(item("hold-2", "CARD_PROD_DONE"))
    assert order_state("hold-2")["needs_reconcile"] is False
    post(hold("hold-2", code="CARD_PROD_PAUSED"))
    # The new hold has the times of the steps: only D1 can say whether it came after them.
    assert order_state("hold-2")["reconcile_reason"] == "hold_then_progress"


def test_an_acknowledgement_lasts_until_the_exception_itself_changes(post, staff, order_state):
    post(item("ack-1", "CARD_PROD_CANCELED"), parcel("ack-1", "IN_TRANSIT", 5))
    order = order_state("ack-1")
    assert order["has_conflict"] is True

    def in_exceptions() -> bool:
        queue = staff.get("/admin/tracking/cardorder/", {"queue": "exceptions"})
        return "ack-1" in queue.content.decode()

    assert in_exceptions()
    staff.post(f"/admin/tracking/cardorder/{order['id']}/acknowledge/", {"note": "Asked D1"})
    assert not in_exceptions()

    post(parcel("ack-1", "DELIVERED", 6))  # the next carrier update: the same exception
    assert order_state("ack-1")["shipment"]["status"] == "DELIVERED"
    assert not in_exceptions()

    post(parcel("ack-1", "HELD_AT_CUSTOMS", 7))  # a new carrier problem: a new exception
    assert in_exceptions()


def test_hold_then_progress_asks_d1_and_its_answer_ends_the_hold(d1, post, staff, order_state):
    """The seed's case: a hold and the resumed step share the operation's startTime."""
    resumed = item("hold-3", "CARD_PROD_ONGOING")
    post(item("hold-3", "CARD_PROD_READY"), hold("hold-3"), resumed)
    order = order_state("hold-3")
    assert order["hold_code"] == "CARD_PROD_ON_HOLD"
    assert (order["needs_reconcile"], order["reconcile_reason"]) == (True, "hold_then_progress")

    def in_exceptions() -> bool:
        queue = staff.get("/admin/tracking/cardorder/", {"queue": "exceptions"})
        return "hold-3" in queue.content.decode()

    assert in_exceptions()
    # D1's answer is CARD_PROD_ONGOING: the very item already stored from the webhook.
    d1.truth_record(issuer_id=ISSUER_ID, items=[hold("hold-3"), resumed])
    order_reconcile(order_id=order["id"])

    order = order_state("hold-3")
    assert order["production_status"] == "CARD_PROD_ONGOING"
    assert order["hold_code"] == ""
    assert order["unknown_codes"] == ["CARD_PROD_ON_HOLD"]  # still on the record
    assert (order["needs_reconcile"], order["reconcile_reason"]) == (False, "")
    assert not in_exceptions()
    # Later progress does not bring the ended hold back.
    post(item("hold-3", "CARD_PROD_DONE"))
    assert order_state("hold-3")["hold_code"] == ""
    assert not in_exceptions()


def test_an_answer_still_on_hold_keeps_the_hold(d1, post, order_state):
    post(item("hold-4", "CARD_PROD_READY"), hold("hold-4"))
    d1.truth_record(issuer_id=ISSUER_ID, items=[item("hold-4", "CARD_PROD_READY"), hold("hold-4")])
    order_reconcile(order_id=order_state("hold-4")["id"])
    order = order_state("hold-4")
    assert order["hold_code"] == "CARD_PROD_ON_HOLD"
    assert order["needs_reconcile"] is False  # D1 has answered; nothing new since
