"""Concurrent deliveries for one order on PostgreSQL: no lost update, no duplicate, no 5xx."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Sum

from tests.domain.test_rules import lifecycle
from tests.fixtures import spec_examples as spec
from tracking.domain.fold import derive_order_state
from tracking.intake.ingest import item_fingerprint
from tracking.intake.projector import fold_pending
from tracking.models import CardOrder, EventCopy, Issuer, OperationEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8
ROUNDS = 6


def test_threads_posting_one_order_at_once_end_in_the_sequential_state(live_server):
    Issuer.objects.create(issuer_id=spec.ISSUER_ID, name="Example Bank")
    items = lifecycle()
    url = f"{live_server.url}/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards"
    rng = random.Random(7)
    # Each thread sends every item several times, in its own shuffled order, some in batches.
    plans = []
    for _ in range(THREADS):
        bodies = []
        for _ in range(ROUNDS):
            shuffled = rng.sample(items, len(items))
            while shuffled:
                size = rng.choice([1, 1, 3])
                bodies.append({"operations": shuffled[:size]})
                shuffled = shuffled[size:]
        plans.append(bodies)

    def send(bodies):
        with requests.Session() as session:
            return [
                session.post(
                    url, data=json.dumps(b), headers={"Content-Type": "application/json"}
                ).status_code
                for b in bodies
            ]

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = [s for result in pool.map(send, plans) for s in result]

    assert set(statuses) == {204}
    # Each request folded right after its commit, skipping orders another request held; the
    # harness folds what is left, as the projector's next wake-up would.
    fold_pending()
    assert not EventCopy.objects.exists()
    total_items = THREADS * ROUNDS * len(items)
    assert OperationEvent.objects.count() == len(items)
    assert OperationEvent.objects.aggregate(n=Sum("times_received"))["n"] == total_items
    assert set(OperationEvent.objects.values_list("fingerprint", flat=True)) == {
        item_fingerprint(i) for i in items
    }
    order = CardOrder.objects.get()
    assert OperationEvent.objects.filter(applied_at__isnull=True).count() == 0

    from tests.domain.test_rules import facts

    expected = derive_order_state(facts(items))
    assert order.production_status == expected.production_status == "CARD_PROD_CANCELED"
    assert order.operation_status == expected.operation_status
    assert order.has_conflict is expected.has_conflict is True
    assert order.shipment_status == expected.shipment["status"] == "DELIVERED"
    assert order.unknown_codes == expected.unknown_codes
    assert order.error_code == expected.error_code
    assert order.event_count == len(items)


def test_a_copy_of_a_stored_item_is_answered_while_its_order_is_locked(live_server):
    import threading

    from django.db import connection, transaction

    Issuer.objects.create(issuer_id=spec.ISSUER_ID, name="Example Bank")
    url = f"{live_server.url}/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards"
    headers = {"Content-Type": "application/json"}
    assert requests.post(url, data=json.dumps(spec.E4), headers=headers).status_code == 204
    locked, release = threading.Event(), threading.Event()

    def hold_the_order_lock():
        with transaction.atomic():
            list(CardOrder.objects.select_for_update())
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_the_order_lock)
    holder.start()
    try:
        assert locked.wait(5)
        response = requests.post(url, data=json.dumps(spec.E4), headers=headers, timeout=5)
        assert response.status_code == 204
        assert OperationEvent.objects.get().times_received == 2
    finally:
        release.set()
        holder.join()
