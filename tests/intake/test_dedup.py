"""Duplicates: every copy is counted, none changes the state."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import spec_examples as spec
from tracking.models import CardOrder, NotificationDelivery, OperationEvent

pytestmark = pytest.mark.django_db


def test_same_item_twice_is_one_event_received_twice(issuer, post_notification):
    post_notification(spec.E6)
    order_before = CardOrder.objects.get()

    assert post_notification(spec.E6).status_code == 204

    event = OperationEvent.objects.get()
    assert event.times_received == 2
    assert event.last_received_at >= event.first_received_at
    order_after = CardOrder.objects.get()
    assert order_after.updated_at == order_before.updated_at
    assert order_after.production_status == "CARD_SHIPPED"
    second = NotificationDelivery.objects.order_by("id").last()
    assert (second.new_count, second.duplicate_count) == (0, 1)


def test_copies_inside_one_post_all_count(issuer, post_notification):
    item = spec.E4["operations"][0]

    post_notification({"operations": [item, item, item]})
    post_notification({"operations": [item]})

    event = OperationEvent.objects.get()
    assert event.times_received == 4
    first = NotificationDelivery.objects.order_by("id").first()
    assert (first.new_count, first.duplicate_count) == (1, 2)


def test_key_order_and_whitespace_do_not_make_a_new_event(issuer, post_notification):
    item = spec.E4["operations"][0]
    reordered = dict(reversed(list(item.items())))

    post_notification({"operations": [item]})
    spaced = json.dumps(reordered, indent=3)
    post_notification('{"operations": [  ' + spaced + " ]}")

    assert OperationEvent.objects.get().times_received == 2


def test_repeated_shipped_with_new_carrier_data_is_a_new_event(issuer, post_notification):
    post_notification(spec.E6)
    post_notification(spec.E7)

    assert OperationEvent.objects.count() == 2
    assert CardOrder.objects.get().shipment_status == "DELIVERED"


def test_a_cleared_reconcile_flag_stays_clear_until_something_new_appears(
    issuer, post_notification
):
    requested, ongoing = spec.E1["operations"][0], spec.E4["operations"][0]
    post_notification({"operations": [requested, ongoing]})  # skips two steps: a gap
    order = CardOrder.objects.get()
    assert (order.needs_reconcile, order.reconcile_reason) == (True, "gap")
    CardOrder.objects.filter(pk=order.pk).update(needs_reconcile=False, reconcile_reason="")

    post_notification(spec.E5)  # the same gap, nothing new
    assert CardOrder.objects.get().needs_reconcile is False

    shipped = {**spec.E6["operations"][0]}
    shipped["details"] = {**shipped["details"], "shipment": {"status": "Parcel at sorting"}}
    post_notification({"operations": [shipped]})  # a carrier word never seen asks nothing
    assert CardOrder.objects.get().needs_reconcile is False

    held = {**spec.E5["operations"][0], "endTime": "2026-03-09T10:00:00Z"}
    held["details"] = {**held["details"], "status": "CARD_PROD_ON_HOLD"}
    post_notification({"operations": [held]})  # a new hold, after everything by D1's times
    order = CardOrder.objects.get()
    assert (order.needs_reconcile, order.reconcile_reason) == (True, "unknown_status")
