"""One card, several operations; pull & change results; the after-shipment queues; carrier links."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tracking.domain import conditions
from tracking.domain.carriers import tracking_url_for
from tracking.intake.card_operations import order_change_parse
from tracking.models import CardOrder, OperationEvent, OrderChange
from tracking.selectors import order_queues
from tracking.services.reconcile import order_due_reason, orders_due_for_reconcile

pytestmark = pytest.mark.django_db

CARD = "card-reorder-01"


def item(operation_id: str, step: str, *, start: str, card: str = CARD, **extra) -> dict:
    body = {
        "operationId": operation_id,
        "operation": "PRODUCE",
        "status": "PENDING",
        "startTime": start,
        "cardId": card,
        "details": {"status": step, **extra.pop("details", {})},
    }
    return body | extra


def post(post_notification, *items) -> None:
    response = post_notification({"operations": list(items)})
    assert response.status_code == 204, response.content


# ---------------------------------------------------------------------------- superseded


def test_a_newer_operation_of_the_card_supersedes_the_older_unfinished_order(
    issuer, post_notification
):
    post(post_notification, item("op-old", "CARD_PROD_READY", start="2026-03-01T08:00:00Z"))
    post(post_notification, item("op-new", "CARD_PROD_REQUESTED", start="2026-03-10T08:00:00Z"))

    old, new = (
        CardOrder.objects.get(operation_id="op-old"),
        CardOrder.objects.get(operation_id="op-new"),
    )
    assert old.superseded_by_id == new.pk
    assert new.superseded_by_id is None
    assert old.pk not in orders_due_for_reconcile(now=timezone.now() + dt.timedelta(days=30))
    assert old in CardOrder.objects.filter(conditions.superseded_q())


def test_d1_times_decide_which_operation_is_newer_not_arrival(issuer, post_notification):
    post(post_notification, item("op-new", "CARD_PROD_REQUESTED", start="2026-03-10T08:00:00Z"))
    post(post_notification, item("op-old", "CARD_PROD_READY", start="2026-03-01T08:00:00Z"))

    old = CardOrder.objects.get(operation_id="op-old")
    assert old.superseded_by == CardOrder.objects.get(operation_id="op-new")


def test_a_finished_older_order_is_not_superseded(issuer, post_notification):
    shipped = item(
        "op-old",
        "CARD_SHIPPED",
        start="2026-03-01T08:00:00Z",
        status="SUCCESSFUL",
        endTime="2026-03-02T08:00:00Z",
    )
    post(post_notification, shipped)
    post(post_notification, item("op-new", "CARD_PROD_REQUESTED", start="2026-03-10T08:00:00Z"))

    assert CardOrder.objects.get(operation_id="op-old").superseded_by_id is None


def test_a_registered_order_d1_moved_past_is_superseded(issuer, post_notification, api):
    api.post(
        "/api/v1/orders/",
        {"issuer_id": issuer.issuer_id, "card_id": CARD, "operation_id": "op-registered"},
        format="json",
    )
    later = (timezone.now() + dt.timedelta(minutes=5)).isoformat()
    post(post_notification, item("op-replacement", "CARD_PROD_REQUESTED", start=later))

    registered = CardOrder.objects.get(operation_id="op-registered")
    assert registered.superseded_by == CardOrder.objects.get(operation_id="op-replacement")


def test_a_file_registered_order_d1_moved_past_is_superseded(issuer, post_notification, api):
    # Placed in a file (no operationId), never spoken about; the card's replacement was
    # registered with its operationId and D1 began it later.
    for body in ({}, {"operation_id": "op-replacement"}):
        api.post(
            "/api/v1/orders/",
            {"issuer_id": issuer.issuer_id, "card_id": CARD, **body},
            format="json",
        )
    later = (timezone.now() + dt.timedelta(minutes=5)).isoformat()
    post(post_notification, item("op-replacement", "CARD_PROD_REQUESTED", start=later))

    waiting = CardOrder.objects.get(operation_id="")
    assert waiting.superseded_by == CardOrder.objects.get(operation_id="op-replacement")


def test_a_registered_replacement_is_not_superseded_by_the_order_it_replaces(
    issuer, post_notification, api
):
    # Both registered when placed, the replacement last; D1's clock runs ahead of ours, so
    # the first operation's startTime comes after the replacement's registration.
    for operation_id in ("op-first", "op-replacement"):
        api.post(
            "/api/v1/orders/",
            {"issuer_id": issuer.issuer_id, "card_id": CARD, "operation_id": operation_id},
            format="json",
        )
    ahead = (timezone.now() + dt.timedelta(hours=2)).isoformat()
    post(post_notification, item("op-first", "CARD_PROD_READY", start=ahead))

    assert CardOrder.objects.get(operation_id="op-replacement").superseded_by_id is None


def test_an_order_superseded_too_early_is_restored_when_d1_shows_it_is_the_newest(
    issuer, post_notification, api
):
    api.post(
        "/api/v1/orders/",
        {"issuer_id": issuer.issuer_id, "card_id": CARD, "operation_id": "op-replacement"},
        format="json",
    )
    ahead = timezone.now() + dt.timedelta(hours=2)
    post(post_notification, item("op-first", "CARD_PROD_READY", start=ahead.isoformat()))
    first = CardOrder.objects.get(operation_id="op-first")
    replacement = CardOrder.objects.get(operation_id="op-replacement")
    assert replacement.superseded_by_id == first.pk  # all the portal could tell so far

    later = (ahead + dt.timedelta(days=1)).isoformat()
    post(post_notification, item("op-replacement", "CARD_PROD_REQUESTED", start=later))

    replacement.refresh_from_db()
    first.refresh_from_db()
    assert replacement.superseded_by_id is None
    assert first.superseded_by_id == replacement.pk


def test_both_order_pages_link_the_cards_orders(issuer, post_notification, client, staff_user):
    post(post_notification, item("op-old", "CARD_PROD_READY", start="2026-03-01T08:00:00Z"))
    post(post_notification, item("op-new", "CARD_PROD_REQUESTED", start="2026-03-10T08:00:00Z"))
    old, new = (CardOrder.objects.get(operation_id=o) for o in ("op-old", "op-new"))
    client.force_login(staff_user)

    old_page = client.get(f"/admin/tracking/cardorder/{old.pk}/change/").content.decode()
    new_page = client.get(f"/admin/tracking/cardorder/{new.pk}/change/").content.decode()

    assert f"/admin/tracking/cardorder/{new.pk}/change/" in old_page
    assert "Open the newer order" in old_page
    assert f"/admin/tracking/cardorder/{old.pk}/change/" in new_page
    assert "Older: superseded by this order" in new_page
    listed = client.get("/admin/tracking/cardorder/?queue=superseded").content.decode()
    assert "op-old" in listed
    assert "op-new" not in listed


# ---------------------------------------------------------------------------- pull & change


def update(result: str | None, change_type: str = "CANCEL", **extra) -> dict:
    details = {"type": change_type} | ({"result": result} if result else {})
    return {
        "operationId": "op-update-01",
        "operation": "UPDATE_ORDER",
        "status": "SUCCESSFUL",
        "startTime": "2026-03-03T10:00:00Z",
        "endTime": "2026-03-03T10:00:05Z",
        "cardId": CARD,
        "details": details | extra.pop("details", {}),
    } | extra


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (update("ACCEPTED"), ("CANCEL", "accepted", True)),
        (update("REJECTED", "REDIRECT"), ("REDIRECT", "rejected", True)),
        (update(None, "ACCELERATE"), ("ACCELERATE", "accepted", True)),
        (
            update(None, "ACCELERATE_AND_REDIRECT", status="FAILED"),
            ("ACCELERATE_AND_REDIRECT", "rejected", True),
        ),
        (
            {
                "operation": "UPDATE_ORDER",
                "status": "SUCCESSFUL",
                "details": {"updateType": "cancel", "decision": "Accepted"},
            },
            ("CANCEL", "accepted", True),
        ),
        (update("MAYBE"), ("CANCEL", "unknown", False)),
        (update("ACCEPTED", "RENAME"), ("RENAME", "accepted", False)),
        ({"operation": "UPDATE_ORDER", "status": "SUCCESSFUL"}, ("", "accepted", False)),
        ("not even an object", ("", "unknown", False)),
    ],
)
def test_update_order_results_are_parsed(sent, expected):
    parsed = order_change_parse(sent)
    assert (parsed.change_type, parsed.result, parsed.is_known_shape) == expected


def test_a_rejected_change_carries_its_reason():
    sent = update("REJECTED", details={"reason": "card already personalized"})
    assert order_change_parse(sent).reason == "card already personalized"
    failed = update(None, status="FAILED", error="Too late for a change")
    assert order_change_parse(failed).reason == "Too late for a change"


def test_a_change_links_to_the_cards_produce_order_with_timeline_filter_and_column(
    issuer, post_notification, client, staff_user
):
    post(post_notification, item("op-prod", "CARD_PROD_ONGOING", start="2026-03-01T08:00:00Z"))
    post(post_notification, update("REJECTED", "REDIRECT", details={"reason": "too late"}))

    order = CardOrder.objects.get(operation_id="op-prod")
    change = OrderChange.objects.get()
    assert change.order == order
    assert (order.change_type, order.change_result) == ("REDIRECT", "rejected")
    client.force_login(staff_user)
    page = client.get(f"/admin/tracking/cardorder/{order.pk}/change/").content.decode()
    assert "REDIRECT rejected" in page  # the timeline entry's label
    assert "too late" in page
    listed = client.get("/admin/tracking/cardorder/?change=result:rejected").content.decode()
    assert "op-prod" in listed
    assert "REDIRECT rejected" in listed  # the list column
    assert (
        "op-prod"
        not in client.get("/admin/tracking/cardorder/?change=type:CANCEL").content.decode()
    )


def test_a_change_arriving_before_its_order_is_linked_when_the_order_appears(
    issuer, post_notification
):
    post(post_notification, update("ACCEPTED", "ACCELERATE"))
    assert OrderChange.objects.get().order is None

    post(post_notification, item("op-prod", "CARD_PROD_READY", start="2026-03-01T08:00:00Z"))

    assert OrderChange.objects.get().order == CardOrder.objects.get()
    assert CardOrder.objects.get().change_type == "ACCELERATE"


def test_an_accepted_cancel_calls_for_a_reconcile_until_d1_confirms_it(issuer, post_notification):
    post(post_notification, item("op-prod", "CARD_PROD_ONGOING", start=timezone.now().isoformat()))
    order = CardOrder.objects.get()
    assert order not in orders_due_for_reconcile()

    post(post_notification, update("ACCEPTED"))

    order.refresh_from_db()
    assert order in orders_due_for_reconcile()
    assert order_due_reason(order=order, now=timezone.now()) == "cancel_unconfirmed"
    post(
        post_notification,
        item("op-prod", "CARD_PROD_CANCELED", start=order.start_time.isoformat(), status="FAILED"),
    )
    order.refresh_from_db()
    assert order not in orders_due_for_reconcile()


def test_an_unknown_update_shape_is_stored_flagged_and_never_refused(issuer, post_notification):
    post(post_notification, item("op-prod", "CARD_PROD_READY", start="2026-03-01T08:00:00Z"))
    odd = {
        "operationId": "op-upd-odd",
        "operation": "UPDATE_ORDER",
        "status": "PENDING",
        "startTime": "2026-03-03T10:00:00Z",
        "cardId": CARD,
        "details": {"whatHappened": {"nested": [1, 2]}},
    }

    post(post_notification, odd)

    event = OperationEvent.objects.get(operation_id="op-upd-odd")
    assert event.payload == odd
    change = OrderChange.objects.get(event=event)
    assert not change.is_known_shape
    assert CardOrder.objects.get().change_result == "unknown"
    listed = CardOrder.objects.filter(change_result="unknown")
    assert listed.count() == 1


# ---------------------------------------------------------------------------- after shipment


def shipped(card: str, carrier_status: str, *, days_ago: float = 1, url: str | None = None) -> dict:
    shipment = {"carrier": "ups", "trackingNumber": f"1Z{card}", "status": carrier_status}
    if url is not None:
        shipment["trackingUrl"] = url
    return item(
        f"op-{card}",
        "CARD_SHIPPED",
        card=card,
        start="2026-03-01T08:00:00Z",
        status="SUCCESSFUL",
        endTime="2026-03-02T08:00:00Z",
        details={"shipment": shipment},
    )


def test_after_shipment_queues(issuer, post_notification, settings):
    for card, status in (
        ("c-delivered", "DELIVERED"),
        ("c-transit", "IN_TRANSIT"),
        ("c-returned", "RETURNED_TO_SENDER"),
        ("c-failed", "FAILED_ATTEMPT"),
    ):
        post(post_notification, shipped(card, status))
    settings.SHIPMENT_IN_TRANSIT_THRESHOLD = dt.timedelta(days=3)
    now = timezone.now()

    def queue(q) -> set[str]:
        return set(CardOrder.objects.filter(q).values_list("card_id", flat=True))

    assert queue(conditions.delivered_q()) == {"c-delivered"}
    assert queue(conditions.returned_q()) == {"c-returned"}
    assert queue(conditions.delivery_failed_q()) == {"c-failed"}
    assert queue(order_queues.in_transit_long_q(now=now)) == set()
    later = now + dt.timedelta(days=4)
    assert queue(order_queues.in_transit_long_q(now=later)) == {"c-transit", "c-failed"}
    # A card returned to sender is an exception: it stopped polling, it must not stay quiet.
    assert "c-returned" in queue(conditions.exception_q())
    assert "c-delivered" not in queue(conditions.exception_q())
    returned = CardOrder.objects.get(card_id="c-returned")
    assert conditions.is_exception(returned)


def test_after_shipment_queues_in_the_admin(issuer, post_notification, client, staff_user):
    post(post_notification, shipped("c-delivered", "DELIVERED"))
    post(post_notification, shipped("c-returned", "RETURNED_TO_SENDER"))
    client.force_login(staff_user)

    delivered = client.get("/admin/tracking/cardorder/?queue=delivered").content.decode()
    returned = client.get("/admin/tracking/cardorder/?queue=returned").content.decode()
    exceptions = client.get("/admin/tracking/cardorder/?queue=exceptions").content.decode()

    assert "c-delivered" in delivered and "c-returned" not in delivered
    assert "c-returned" in returned and "c-delivered" not in returned
    assert "c-returned" in exceptions


# ---------------------------------------------------------------------------- carriers


def test_tracking_url_for_prefers_d1s_url_and_falls_back_to_the_carrier_template(settings):
    assert (
        tracking_url_for("ups", "1Z999", "https://d1.example/track/1")
        == "https://d1.example/track/1"
    )
    assert tracking_url_for("ups", "1Z999", "") == "https://www.ups.com/track?tracknum=1Z999"
    assert (
        tracking_url_for("fedex", "12 34/5", None)
        == "https://www.fedex.com/fedextrack/?trknbr=12%2034%2F5"
    )
    assert (
        tracking_url_for("ups", "1Z999", "javascript:alert(1)")
        == "https://www.ups.com/track?tracknum=1Z999"
    )
    assert tracking_url_for("pigeon-post", "P1", "") == ""
    assert tracking_url_for("ups", "", "") == ""
    settings.CARRIER_TRACKING_URLS = {"pigeon-post": "https://pigeons.example/{number}"}
    assert tracking_url_for("pigeon-post", "P1", "") == "https://pigeons.example/P1"


def test_the_order_page_links_the_carrier_when_d1_sent_no_url(
    issuer, post_notification, client, staff_user
):
    post(post_notification, shipped("c-nourl", "IN_TRANSIT"))
    client.force_login(staff_user)
    order = CardOrder.objects.get(card_id="c-nourl")

    page = client.get(f"/admin/tracking/cardorder/{order.pk}/change/").content.decode()

    assert "https://www.ups.com/track?tracknum=1Zc-nourl" in page
