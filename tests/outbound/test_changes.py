"""One event per real change, whatever the arrival order, copies and batching of D1's items."""

from __future__ import annotations

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.domain.test_rules import lifecycle
from tests.intake import streams
from tracking.intake.ingest import ingest_operations
from tracking.models import CardOrder, NotificationDelivery
from tracking.models.outbound import OutboundEvent
from tracking.outbound.changes import (
    DELIVERED,
    REGISTERED,
    SHIPPED,
    STAGE_CHANGED,
    OrderFacts,
    change_events,
    order_facts,
)

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    pass


def _ingest(issuer, operations) -> None:
    delivery = NotificationDelivery.objects.create(issuer=issuer, status_code=204)
    ingest_operations(issuer=issuer, operations=operations, delivery=delivery)


def _facts() -> OrderFacts:
    order = CardOrder.objects.filter(card_id=streams.CARD_ID).first()
    return order_facts(order) if order is not None else OrderFacts()


def _events() -> list[OutboundEvent]:
    return list(OutboundEvent.objects.order_by("sequence"))


def run_batches(issuer, batches: list[list[dict]]) -> None:
    """Ingest `batches` one by one and check each batch's events against its change."""
    try:
        with transaction.atomic():
            for batch in batches:
                before, seen = _facts(), len(_events())
                _ingest(issuer, batch)
                after = _facts()
                made = _events()[seen:]
                # Exactly the change's events: none for a batch that changed nothing.
                assert [e.type for e in made] == change_events(before, after), (before, after)
                # Each carries the order as it is after the change.
                order = CardOrder.objects.filter(card_id=streams.CARD_ID).first()
                for event in made:
                    shown = event.payload["order"]
                    assert (shown["id"], shown["production_status"]) == (
                        order.pk,
                        order.production_status,
                    )
            events = _events()
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            # Every item again, in one batch: copies emit nothing.
            _ingest(issuer, [item for batch in batches for item in batch])
            assert len(_events()) == len(events)
            raise Rollback
    except Rollback:
        pass


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=streams.order_items, data=st.data())
def test_each_batch_emits_exactly_the_events_of_its_change(issuer, items, data):
    copies = data.draw(st.lists(st.sampled_from(items), max_size=3), label="copies")
    arrival = data.draw(st.permutations(items + copies), label="arrival")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=len(arrival), max_size=len(arrival)))
    run_batches(issuer, streams.batched(arrival, sizes))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_lifecycle_in_any_order_ships_and_delivers_at_most_once(issuer, data):
    items = lifecycle()[:9]  # the production path and the carrier, without the failures
    arrival = data.draw(st.permutations(items + items[:2]), label="arrival")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=len(arrival), max_size=len(arrival)))
    try:
        with transaction.atomic():
            for batch in streams.batched(arrival, sizes):
                _ingest(issuer, batch)
            types = [e.type for e in _events()]
            raise Rollback
    except Rollback:
        pass
    assert types.count(SHIPPED) == 1
    assert types.count(DELIVERED) == 1
    assert types.count(STAGE_CHANGED) <= 5


facts = st.builds(
    OrderFacts,
    production_status=st.sampled_from(["", *streams.STEPS, "CARD_SHIPPED", "DATA_EXCEPTION"]),
    production_rank=st.none() | st.integers(0, 110),
    carrier_class=st.sampled_from(["", "in_transit", "delivered"]),
    failed=st.booleans(),
    cancelled=st.booleans(),
    exception=st.booleans(),
    superseded=st.booleans(),
    silent=st.booleans(),
)


@given(facts)
def test_no_change_no_event(same):
    assert change_events(same, same) == []


def test_a_new_registered_order_is_registered_only():
    assert change_events(None, OrderFacts()) == [REGISTERED]


def test_a_rederive_that_changes_an_order_emits_its_change_marked_so(issuer):
    from tracking.intake.ingest.rederive import orders_rederive

    _ingest(issuer, lifecycle()[:2])
    order = CardOrder.objects.get()
    count = OutboundEvent.objects.count()
    assert orders_rederive().changed == 0
    assert OutboundEvent.objects.count() == count  # nothing changed: nothing emitted
    # State stored by older rules: one step behind what the events say.
    CardOrder.objects.filter(pk=order.pk).update(
        production_status="CARD_PROD_REQUESTED", production_rank=10, rules_version=1
    )
    assert orders_rederive(outdated_only=True).changed == 1
    event = OutboundEvent.objects.order_by("-sequence").first()
    assert (event.type, event.rederive, event.payload["rederive"]) == (
        STAGE_CHANGED,
        True,
        True,
    )
    assert event.payload["order"]["production_status"] == "DATA_PREPARED"


def test_an_older_operation_of_the_card_is_superseded_once(issuer):
    def operation(op: str, start: str) -> dict:
        return {
            "operationId": op,
            "operation": "PRODUCE",
            "status": "PENDING",
            "startTime": start,
            "cardId": "card-sup-1",
            "details": {"status": "CARD_PROD_REQUESTED"},
        }

    _ingest(issuer, [operation("op-old", "2026-03-01T09:00:00.000Z")])
    _ingest(issuer, [operation("op-new", "2026-03-02T09:00:00.000Z")])
    _ingest(issuer, [operation("op-new", "2026-03-02T09:00:00.000Z")])  # a copy
    old = CardOrder.objects.get(operation_id="op-old")
    assert old.superseded_by_id is not None
    types = list(
        OutboundEvent.objects.filter(order=old).order_by("sequence").values_list("type", flat=True)
    )
    assert types == [STAGE_CHANGED, "card_order.superseded"]


def test_a_registered_order_unknown_at_d1_for_too_long_is_an_exception_event(issuer, settings):
    import datetime as dt

    from django.utils import timezone

    from tracking.models import ReconcileOutcome
    from tracking.services.d1_answers import order_not_found_update

    now = timezone.now()
    order = CardOrder.objects.create(
        issuer=issuer,
        card_id="card-nf-1",
        operation_id="",
        registered_at=now - dt.timedelta(days=5),
        d1_not_found_since=now - settings.REGISTERED_NOT_FOUND_AFTER - dt.timedelta(hours=1),
    )
    order_not_found_update(order, outcome=ReconcileOutcome.NOT_FOUND, now=now)
    event = OutboundEvent.objects.get(order=order)
    assert event.type == "card_order.exception"
    assert event.payload["reason"] == order.exception_reason != ""
    order_not_found_update(order, outcome=ReconcileOutcome.NOT_FOUND, now=now)  # still: no event
    assert OutboundEvent.objects.filter(order=order).count() == 1
