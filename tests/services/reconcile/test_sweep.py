"""Which orders the sweep picks, and that claims keep two sweeps apart."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.items import body, item
from tracking.models import CardOrder, Issuer
from tracking.services.reconcile import (
    order_due_reason,
    orders_claim_for_reconcile,
    orders_due_for_reconcile,
    orders_open_for_reconcile,
    reconcile_sweep,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def at(time_machine):
    """Move the clock: at(seconds after T0)."""

    def move(seconds: float = 0) -> datetime:
        moment = T0 + timedelta(seconds=seconds)
        time_machine.move_to(moment, tick=False)
        return moment

    move(0)
    return move


@pytest.fixture
def post(issuer, post_notification):
    def send(*items):
        response = post_notification(body(*items))
        assert response.status_code == 204, response.content

    return send


def due() -> dict[str, str]:
    """card id → why the sweep would pick it, right now."""
    now = timezone.now()
    return {
        order.card_id: order_due_reason(order=order, now=now)
        for order in orders_due_for_reconcile(now=now)
    }


def test_flagged_orders_are_due_at_once_with_their_reason(at, post):
    post(item("gap", "CARD_PROD_REQUESTED"), item("gap", "CARD_PROD_ONGOING"))
    post(item("hold", "CARD_PROD_REQUESTED"), item("hold", "CARD_PROD_ON_HOLD"))
    post(
        item("conflict", "CARD_SHIPPED", shipment_status="IN_TRANSIT"),
        item("conflict", "CARD_PROD_CANCELED"),
    )
    post(item("calm", "CARD_PROD_REQUESTED"), item("calm", "DATA_PREPARED"))

    # The hold shares its step's times: D1's times cannot say it came after the step.
    assert due() == {"gap": "gap", "hold": "hold_then_progress", "conflict": "conflict"}


def test_orders_stuck_in_a_stage_longer_than_its_threshold_are_due(at, post, settings):
    settings.RECONCILE_STAGE_THRESHOLDS = {"CARD_PROD_REQUESTED": 3600, "DATA_PREPARED": 6 * 3600}
    settings.RECONCILE_DEFAULT_STAGE_THRESHOLD = timedelta(hours=24)
    post(item("requested", "CARD_PROD_REQUESTED"))
    post(item("prepared", "DATA_PREPARED", due_date="2026-12-31"))
    post(item("ongoing", "CARD_PROD_ONGOING"))  # no threshold of its own: the default
    post(item("rejected", "CARD_PROD_REQUESTED"), item("rejected", "DATA_EXCEPTION"))

    at(3599)
    assert due() == {}
    at(3601)
    assert due() == {"requested": "stage_threshold"}
    at(6 * 3600 + 1)
    assert due() == {"requested": "stage_threshold", "prepared": "stage_threshold"}
    at(10 * 24 * 3600)
    assert set(due()) == {"requested", "prepared", "ongoing"}  # never the terminal one


def test_orders_past_their_due_date_plus_grace_are_due(at, post, settings):
    settings.RECONCILE_STAGE_THRESHOLDS = {"DATA_PREPARED": 365 * 24 * 3600}
    settings.RECONCILE_DUE_DATE_GRACE = timedelta(days=2)
    post(item("late", "DATA_PREPARED", due_date="2026-10-28"))
    post(item("on-time", "DATA_PREPARED", due_date="2026-11-01"))
    post(item("shipped-late", "CARD_SHIPPED", shipment_status="DELIVERED", due_date="2026-10-01"))

    assert due() == {"late": "past_due"}
    at(3 * 24 * 3600)
    assert due() == {"late": "past_due", "on-time": "past_due"}


def test_shipped_orders_are_asked_at_a_slower_cadence_until_delivery_or_the_cap(at, post, settings):
    settings.RECONCILE_SHIPPED_INTERVAL = timedelta(hours=12)
    settings.RECONCILE_SHIPPED_MAX_AGE = timedelta(days=30)
    post(item("in-transit", "CARD_SHIPPED", shipment_status="IN_TRANSIT"))
    post(item("delivered", "CARD_SHIPPED", shipment_status="DELIVERED"))
    post(item("no-carrier", "CARD_SHIPPED"))

    at(12 * 3600 - 1)
    assert due() == {}
    at(12 * 3600 + 1)
    assert due() == {"in-transit": "awaiting_delivery"}
    at(31 * 24 * 3600)
    assert due() == {}
    # The command's --all still lists it: it is not in a final state.
    assert set(orders_open_for_reconcile().values_list("card_id", flat=True)) == {"in-transit"}


def test_backing_off_claimed_and_switched_off_orders_are_not_due(at, post):
    for card in ("backing-off", "claimed", "claim-expired", "switched-off"):
        post(item(card, "CARD_PROD_REQUESTED"), item(card, "CARD_PROD_ONGOING"))
    now = timezone.now()
    CardOrder.objects.filter(card_id="backing-off").update(
        reconcile_next_at=now + timedelta(minutes=5)
    )
    CardOrder.objects.filter(card_id="claimed").update(
        reconcile_claimed_until=now + timedelta(minutes=5)
    )
    CardOrder.objects.filter(card_id="claim-expired").update(
        reconcile_claimed_until=now - timedelta(seconds=1)
    )
    other = Issuer.objects.create(issuer_id="OTHERBANK1", name="Other", is_active=False)
    CardOrder.objects.filter(card_id="switched-off").update(issuer=other)

    assert due() == {"claim-expired": "gap"}
    at(5 * 60)
    assert due() == {"backing-off": "gap", "claim-expired": "gap", "claimed": "gap"}


def test_a_sweep_claims_each_due_order_once_until_the_lease_ends(
    at, post, settings, django_capture_on_commit_callbacks
):
    settings.RECONCILE_CLAIM_SECONDS = 300
    for n in range(5):
        post(item(f"card-{n}", "CARD_PROD_REQUESTED"), item(f"card-{n}", "CARD_PROD_DONE"))

    with django_capture_on_commit_callbacks() as queued:
        first = reconcile_sweep(batch_size=2)
    assert len(first.order_ids) == 5
    assert len(queued) == 5  # one task per order, published after commit

    with django_capture_on_commit_callbacks() as queued:
        assert reconcile_sweep().order_ids == []
    assert queued == []

    at(301)  # a task that never ran (lost message): the next sweep takes the order again
    assert sorted(reconcile_sweep(inline=False).order_ids) == sorted(first.order_ids)


def _due_orders(count: int) -> None:
    issuer = Issuer.objects.create(issuer_id=ISSUER_ID, name="Example Bank")
    CardOrder.objects.bulk_create(
        CardOrder(
            issuer=issuer,
            card_id=f"card-{n:04d}",
            operation_id=f"op-{n:04d}",
            operation="PRODUCE",
            needs_reconcile=True,
            reconcile_reason="gap",
        )
        for n in range(count)
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("skip_locked", [True, False], ids=["skip-locked", "lease"])
def test_two_sweeps_at_once_never_claim_the_same_order(skip_locked, monkeypatch):
    if not skip_locked:
        monkeypatch.setattr(type(connection.features), "has_select_for_update_skip_locked", False)
    _due_orders(120)
    threads = 4
    start = threading.Barrier(threads)
    claimed: list[list[int]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            start.wait()
            # Each sweep holds its claim transaction open for a moment, so the others run
            # while its rows are still locked.
            with transaction.atomic():
                order_ids = orders_claim_for_reconcile(limit=40)
                threading.Event().wait(0.3)
            claimed.append(order_ids)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=sweep) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    every_claim = [order_id for order_ids in claimed for order_id in order_ids]
    assert len(every_claim) == len(set(every_claim))
    if skip_locked:
        # Locked rows are skipped, not waited for: the four sweeps share out all 120 orders.
        assert len(every_claim) == 120
    assert CardOrder.objects.filter(reconcile_claimed_until__isnull=False).count() == len(
        every_claim
    )


def test_an_operation_d1_ended_at_any_step_is_never_swept(at, post, settings):
    settings.RECONCILE_STAGE_THRESHOLDS = {"CARD_PROD_DONE": 3600}
    settings.RECONCILE_DUE_DATE_GRACE = timedelta(days=1)
    done = item("done", "CARD_PROD_DONE", due_date="2026-10-01")
    done["status"], done["endTime"] = "SUCCESSFUL", "2026-03-04T16:40:51.007Z"
    failed = item("failed", "CARD_PROD_DONE")
    failed["status"], failed["endTime"] = "FAILED", "2026-03-04T16:40:51.007Z"
    post(item("done", "CARD_PROD_ONGOING"), done)
    post(item("failed", "CARD_PROD_ONGOING"), failed)
    post(item("open", "CARD_PROD_DONE"))

    at(30 * 24 * 3600)
    assert due() == {"open": "stage_threshold"}  # neither stuck, past due nor awaiting delivery


def test_a_carrier_word_of_any_form_ends_the_awaiting_delivery_cadence(at, post, settings):
    settings.RECONCILE_SHIPPED_INTERVAL = timedelta(hours=12)
    settings.RECONCILE_SHIPPED_MAX_AGE = timedelta(days=30)
    post(item("aftership-delivered", "CARD_SHIPPED", shipment_status="Delivered_001"))
    post(item("returned", "CARD_SHIPPED", shipment_status="Exception_011"))
    post(item("in-transit", "CARD_SHIPPED", shipment_status="InTransit"))
    post(item("novel", "CARD_SHIPPED", shipment_status="Colis en attente"))

    at(12 * 3600 + 1)
    # A word never seen is no unknown code: the order is asked at the shipped cadence only.
    assert due() == {"in-transit": "awaiting_delivery", "novel": "awaiting_delivery"}
