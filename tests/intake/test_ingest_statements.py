"""Ingest's writes: the same state on every backend, in few statements on PostgreSQL.

On PostgreSQL ingest merges its steps into data-modifying CTEs
(`tracking/intake/ingest/postgres.py`); elsewhere it runs one statement per step. Both must
leave what a re-derivation of the stored events leaves, which the first test checks on
whichever backend the suite runs.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.domain.test_rules import lifecycle
from tracking.domain.order_state import DERIVED_COLUMNS
from tracking.intake.card_operations import UNKNOWN_AT_D1
from tracking.intake.ingest import refresh_orders
from tracking.intake.projector import fold_pending
from tracking.models import CardOrder, NotificationDelivery, OperationEvent

pytestmark = pytest.mark.django_db


def other_card(step: str, *, status: str = "PENDING") -> dict:
    return {
        "operationId": "op-other-1",
        "operation": "PRODUCE",
        "status": status,
        "startTime": "2026-03-02T09:15:04.120Z",
        "cardId": "card-other-1",
        "details": {"status": step},
    }


# A copy moves its event's last receipt without re-deriving the order (a copy changes
# nothing), so `last_event_at` may lag the events until the order's next new event.
NOT_COMPARED = {"updated_at", "last_event_at"}


def stored_state() -> dict:
    orders = {
        o["id"]: o
        for o in CardOrder.objects.values(
            "id", *[f for f in DERIVED_COLUMNS if f not in NOT_COMPARED]
        )
    }
    events = {
        e["id"]: e
        for e in OperationEvent.objects.values("id", "outcome", "times_received", "order_id")
    }
    return {"orders": orders, "events": events}


def test_ingest_leaves_what_a_refold_of_its_events_leaves(issuer, post_notification):
    items = [
        *lifecycle(),
        other_card("CARD_PROD_REQUESTED"),
        other_card("CARD_PROD_PERSONALIZED"),
        {"operationId": "op-bad", "operation": "PRODUCE", "cardId": "card-bad"},  # invalid
    ]
    rng = random.Random(12)
    sent = [*items, *rng.sample(items, 5)]  # some items twice, some in the same POST
    rng.shuffle(sent)
    while sent:
        size = rng.choice([1, 2, 4])
        response = post_notification({"operations": sent[:size]})
        assert response.status_code in (204, 400), response.content
        sent = sent[size:]

    before = stored_state()
    with transaction.atomic():
        refresh_orders(list(CardOrder.objects.all()))
    assert stored_state() == before
    # Every item counted once per time it was sent; the one without a status stored invalid.
    assert sum(e["times_received"] for e in before["events"].values()) == len(items) + 5
    assert OperationEvent.objects.filter(outcome="invalid").count() == 1
    # An order with no shipment data has none (SQL NULL, as a saved model has), not JSON null.
    assert CardOrder.objects.filter(card_id="card-other-1", shipment__isnull=True).exists()


def test_delivery_counts_are_what_the_post_did(issuer, post_notification):
    first, second = other_card("CARD_PROD_REQUESTED"), other_card("CARD_PROD_PERSONALIZED")
    post_notification({"operations": [first, first]})
    post_notification({"operations": [first, second, second]})
    post_notification({"operations": [second]})
    counts = list(
        NotificationDelivery.objects.order_by("id").values_list(
            "item_count", "new_count", "duplicate_count", "rejected_count", "status_code"
        )
    )
    assert counts == [(2, 1, 1, 0, 204), (3, 1, 2, 0, 204), (1, 0, 1, 0, 204)]
    assert dict(OperationEvent.objects.values_list("production_status", "times_received")) == {
        "CARD_PROD_REQUESTED": 3,
        "CARD_PROD_PERSONALIZED": 3,
    }


def test_a_copy_is_counted_when_the_new_item_beside_it_changes_its_outcome(
    issuer, post_notification
):
    requested, prepared = other_card("CARD_PROD_REQUESTED"), other_card("DATA_PREPARED")
    post_notification({"operations": [requested]})
    # A POST whose transaction began before the first one's but waited for the order's lock
    # commits after it with an earlier receipt time: its new item arrived first, which makes
    # the stored one stale, and the stored one is also a copy in that POST.
    with time_machine.travel(timezone.now() - dt.timedelta(minutes=1)):
        response = post_notification({"operations": [prepared, requested]})
    assert response.status_code == 204, response.content
    stored = OperationEvent.objects.get(production_status="CARD_PROD_REQUESTED")
    assert (stored.times_received, stored.outcome) == (2, "stale")
    before = stored_state()
    with transaction.atomic():
        refresh_orders(list(CardOrder.objects.all()))
    assert stored_state() == before


def ingest_statements(post_notification, items) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = post_notification({"operations": items})
    assert response.status_code == 204, response.content
    # The issuer's row is looked up by the view (savepoints are the test's transaction).
    return [
        q["sql"]
        for q in queries.captured_queries
        if "tracking_issuer" not in q["sql"][:200] and "SAVEPOINT" not in q["sql"][:20]
    ]


@pytest.mark.postgres
def test_a_post_stores_in_a_few_statements_and_the_projector_folds_in_sets(
    issuer, post_notification, settings
):
    """The request only stores (the projector is woken at commit: never, inside a test's
    transaction); a set of orders is then folded in a few statements, whatever its size."""
    settings.INGEST_FOLD = "celery"
    # One look (the stored events and the cards' orders), the delivery, the new order, the event.
    new_order = ingest_statements(post_notification, [other_card("CARD_PROD_REQUESTED")])
    assert len(new_order) == 4, new_order
    next_step = ingest_statements(post_notification, [other_card("CARD_PROD_PERSONALIZED")])
    assert len(next_step) == 3, next_step
    # Copies: the look, then the delivery with its copies appended, in one statement (no BEGIN
    # or COMMIT of its own outside a test). No lock, no fold.
    copies = ingest_statements(post_notification, [other_card("CARD_PROD_PERSONALIZED")] * 3)
    assert len(copies) == 2, copies
    order_insert = 'INSERT INTO "tracking_cardorder'
    assert not any("FOR UPDATE" in sql or order_insert in sql for sql in copies), copies
    batch = ingest_statements(
        post_notification,
        [{**other_card("CARD_PROD_REQUESTED"), "cardId": f"card-{n}"} for n in range(20)],
    )
    assert len(batch) == 4, batch
    assert CardOrder.objects.count() == 21
    assert not any("UPDATE" in sql for sql in [*new_order, *next_step, *copies, *batch])

    with CaptureQueriesContext(connection) as queries:
        report = fold_pending()
    assert report.orders == 21 and report.copies == 3
    folded = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"][:20]]
    # One set: copies counted (2), orders found and locked (2), card mates (1), the fold's
    # reads and writes with the outbox, the card pass; then a look that finds nothing left.
    assert len(folded) <= 30, folded
    assert CardOrder.objects.get(card_id="card-other-1").event_count == 2
    assert OperationEvent.objects.filter(applied_at__isnull=True).count() == 0


def test_a_card_flagged_unknown_at_d1_is_cleared_by_its_first_notification(
    issuer, post_notification
):
    # The card-level pass is skipped for a card with nothing to do; this one has something.
    order = CardOrder.objects.create(
        issuer=issuer,
        card_id="card-other-1",
        operation_id="op-other-1",
        registered_at=timezone.now(),
        d1_not_found_since=timezone.now(),
        exception_reason=UNKNOWN_AT_D1,
    )
    response = post_notification({"operations": [other_card("CARD_PROD_REQUESTED")]})
    assert response.status_code == 204, response.content
    order.refresh_from_db()
    assert (order.exception_reason, order.d1_not_found_since) == ("", None)
    assert order.production_status == "CARD_PROD_REQUESTED"
