"""Store on the request, fold in batches: the projector leaves the state today's fold leaves."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.domain.test_rules import lifecycle
from tests.intake import streams
from tests.intake.test_ingest_property import ARRIVAL_COLUMNS, Rollback
from tracking.intake import projector
from tracking.intake.ingest import ingest_operations, ingest_prepare
from tracking.intake.ingest.store import ingest_store
from tracking.intake.locking import LockOutsideTransaction, orders_locked
from tracking.intake.projector import FoldScope, fold_pending, order_events_waiting
from tracking.models import CardOrder, EventCopy, NotificationDelivery, OperationEvent

pytestmark = pytest.mark.django_db


def snapshot() -> dict:
    """Every order's state (arrival times aside) and every event's count and outcome."""
    orders = {
        (o.card_id, o.operation_id): {
            f.name: getattr(o, f.attname)
            for f in CardOrder._meta.concrete_fields
            if f.name not in ARRIVAL_COLUMNS
        }
        for o in CardOrder.objects.all()
    }
    events = {
        e.fingerprint: (e.times_received, e.outcome, e.applied_at is not None)
        for e in OperationEvent.objects.all()
    }
    return {"orders": orders, "events": events}


def fed(issuer, deliveries: list[list[dict]], *, stored: bool, fold_after: set[int]) -> dict:
    """Feed the deliveries per request (today's fold) or stored, folded at `fold_after` and at
    the end; read the state, and roll everything back."""
    state: dict = {}
    try:
        with transaction.atomic():
            for n, operations in enumerate(deliveries):
                delivery = NotificationDelivery(issuer=issuer, status_code=204)
                if stored:
                    batch = ingest_prepare(operations)
                    ingest_store(issuer=issuer, batch=batch, delivery=delivery, now=timezone.now())
                    if n in fold_after:
                        fold_pending(batch=2)
                else:
                    delivery.save()
                    ingest_operations(issuer=issuer, operations=operations, delivery=delivery)
            if stored:
                fold_pending(batch=2)  # small sets: several rounds
            state = snapshot()
            raise Rollback
    except Rollback:
        pass
    return state


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=streams.order_items, data=st.data())
def test_batched_projection_gives_the_state_of_the_fold_on_each_request(issuer, items, data):
    copies = data.draw(st.lists(st.sampled_from(items), max_size=3), label="copies")
    arrival = data.draw(st.permutations(items + copies), label="arrival")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=len(arrival), max_size=len(arrival)))
    deliveries = streams.batched(arrival, sizes)
    fold_after = data.draw(st.sets(st.integers(0, len(deliveries) - 1)), label="folds between")

    per_request = fed(issuer, deliveries, stored=False, fold_after=set())
    projected = fed(issuer, deliveries, stored=True, fold_after=fold_after)
    assert projected["events"] == per_request["events"]
    assert projected["orders"] == per_request["orders"]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_several_cards_in_one_delivery_are_projected_like_one_by_one(issuer, data):
    cards = [f"card-{n}" for n in range(3)]
    items = [{**i, "cardId": card} for card in cards for i in lifecycle()[:4]]
    arrival = data.draw(st.permutations(items), label="arrival")
    sizes = data.draw(st.lists(st.integers(1, 6), min_size=len(arrival), max_size=len(arrival)))
    deliveries = streams.batched(arrival, sizes)
    assert fed(issuer, deliveries, stored=True, fold_after=set()) == fed(
        issuer, deliveries, stored=False, fold_after=set()
    )


def store(issuer, operations: list[dict]):
    delivery = NotificationDelivery(issuer=issuer, status_code=204)
    return ingest_store(
        issuer=issuer, batch=ingest_prepare(operations), delivery=delivery, now=timezone.now()
    )


def test_the_request_stores_and_the_projector_folds(issuer):
    steps = lifecycle()[:2]
    stored = store(issuer, steps)
    order = CardOrder.objects.get()
    assert not stored.folded and stored.to_fold.order_ids == {order.pk}
    assert order.event_count == 0 and order.production_status == ""
    assert order_events_waiting(order.pk) == 2
    report = fold_pending()
    assert report.orders == 1 and len(report.lags) == 1
    order.refresh_from_db()
    assert order.event_count == 2 and order.production_status == steps[1]["details"]["status"]
    assert order_events_waiting(order.pk) == 0


def test_a_copy_is_appended_and_counted_once_by_the_projector(issuer):
    store(issuer, lifecycle()[:1])
    fold_pending()
    stored = store(issuer, lifecycle()[:1] * 3)
    event = OperationEvent.objects.get()
    assert stored.result.duplicate_count == 3
    assert stored.to_fold == FoldScope(event_ids=frozenset({event.pk}))
    assert EventCopy.objects.aggregate(n=Sum("copies"))["n"] == 3
    assert OperationEvent.objects.get().times_received == 1  # not counted yet
    assert order_events_waiting(CardOrder.objects.get().pk) == 1
    fold_pending()
    fold_pending()
    assert OperationEvent.objects.get().times_received == 4
    assert not EventCopy.objects.exists()


def test_a_projector_killed_mid_batch_loses_nothing_and_doubles_nothing(issuer, monkeypatch):
    """Drill: the round dies after counting copies, before the fold; then it runs again."""
    deliveries = [
        [{**i, "cardId": card} for i in lifecycle()[:3]] for card in ("card-a", "card-b", "card-c")
    ]
    deliveries.append([{**lifecycle()[0], "cardId": "card-a"}] * 2)  # copies waiting
    expected = fed(issuer, deliveries, stored=False, fold_after=set())
    for operations in deliveries:
        store(issuer, operations)
    # Killed while counting copies: the rows it deleted come back, nothing is counted.
    real_add, real_refresh = projector._events_add, projector.refresh_orders

    def killed_counting(sums):
        raise SystemExit("projector killed")

    monkeypatch.setattr(projector, "_events_add", killed_counting)
    with pytest.raises(SystemExit):
        fold_pending()
    assert EventCopy.objects.aggregate(n=Sum("copies"))["n"] == 2
    assert OperationEvent.objects.aggregate(n=Sum("times_received"))["n"] == 9
    monkeypatch.setattr(projector, "_events_add", real_add)

    # Killed in the middle of a set of orders: part of the set written, then the process dies.
    def killed_folding(orders, **kwargs):
        real_refresh(orders[:1], **kwargs)
        raise SystemExit("projector killed")

    monkeypatch.setattr(projector, "refresh_orders", killed_folding)
    with pytest.raises(SystemExit):
        fold_pending()
    # The copies were counted once, in their own transaction; the set rolled back whole.
    assert not EventCopy.objects.exists()
    assert OperationEvent.objects.aggregate(n=Sum("times_received"))["n"] == 11
    assert OperationEvent.objects.filter(applied_at__isnull=True).count() == 9
    assert set(CardOrder.objects.values_list("event_count", flat=True)) == {0}
    monkeypatch.setattr(projector, "refresh_orders", real_refresh)
    fold_pending()
    assert snapshot() == expected
    assert OperationEvent.objects.aggregate(n=Sum("times_received"))["n"] == 11


def test_rederive_dry_run_finds_nothing_to_change_after_a_fed_run(issuer):
    for size in (1, 3, 2):
        for card in ("card-x", "card-y"):
            store(issuer, [{**i, "cardId": card} for i in lifecycle()[:size]])
    fold_pending()
    out = io.StringIO()
    call_command("rederive", "--dry-run", stdout=out, stderr=io.StringIO())
    assert "Re-derived 2 orders" in out.getvalue(), out.getvalue()
    assert "Orders whose state changes: 0; only re-stamped: 0; " in out.getvalue()
    assert "events whose outcome changes: 0." in out.getvalue()


def test_orders_are_locked_only_inside_a_transaction(issuer):
    from django.db import connection

    with pytest.raises(LockOutsideTransaction):
        atomic = connection.in_atomic_block
        connection.in_atomic_block = False  # as outside the test's transaction
        try:
            orders_locked(CardOrder.objects.all())
        finally:
            connection.in_atomic_block = atomic


def test_the_database_away_while_events_wait_loses_nothing(issuer, monkeypatch):
    """Drill: the projector's database fails while events wait; once it is back, one run
    folds everything, each copy counted once."""
    from django.db import OperationalError

    expected = fed(issuer, [lifecycle()[:3], lifecycle()[:1] * 2], stored=False, fold_after=set())
    store(issuer, lifecycle()[:3])
    store(issuer, lifecycle()[:1] * 2)

    def away():
        raise OperationalError("the database is away")

    monkeypatch.setattr(projector, "transaction_required", away)
    for _ in range(3):  # wake-ups and sweeps while it is away
        with pytest.raises(OperationalError):
            fold_pending()
    assert EventCopy.objects.aggregate(n=Sum("copies"))["n"] == 2
    assert OperationEvent.objects.filter(applied_at__isnull=True).count() == 3
    monkeypatch.undo()
    fold_pending()
    assert snapshot() == expected


def test_a_wake_up_at_commit_queues_one_task_that_folds(
    issuer, post_notification, settings, django_capture_on_commit_callbacks
):
    settings.INGEST_FOLD = "celery"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert post_notification({"operations": lifecycle()[:2]}).status_code == 204
        assert CardOrder.objects.get().event_count == 0  # stored, not folded yet
    assert len(callbacks) == 1
    assert CardOrder.objects.get().event_count == 2


def test_an_inline_post_folds_what_it_stored_and_leaves_a_backlog_to_the_sweep(
    issuer, post_notification, settings
):
    settings.INGEST_FOLD = "celery"  # a backlog: stored while folding was deferred
    waiting = [{**i, "cardId": "card-waiting"} for i in lifecycle()[:2]]
    # Its wake-up waits for a commit that never comes (the test's transaction).
    assert post_notification({"operations": waiting}).status_code == 204
    settings.INGEST_FOLD = "inline"
    mine = [{**i, "cardId": "card-mine"} for i in lifecycle()[:3]]
    assert post_notification({"operations": mine}).status_code == 204
    assert post_notification({"operations": mine[:1]}).status_code == 204  # a copy

    orders = {o.card_id: o for o in CardOrder.objects.all()}
    assert orders["card-mine"].event_count == 3
    assert orders["card-mine"].production_status == mine[2]["details"]["status"]
    counts = OperationEvent.objects.filter(order=orders["card-mine"])
    assert sorted(counts.values_list("times_received", flat=True)) == [1, 1, 2]  # counted at once
    # The backlog of other orders is not one POST's to fold.
    assert orders["card-waiting"].event_count == 0
    assert order_events_waiting(orders["card-waiting"].pk) == 2
    assert fold_pending().orders == 1  # the sweep
    orders["card-waiting"].refresh_from_db()
    assert orders["card-waiting"].event_count == 2


def test_a_set_counts_its_orders_copies_before_folding_so_the_last_message_includes_them(issuer):
    store(issuer, lifecycle()[:1])
    store(issuer, lifecycle()[:1])  # a copy, later
    copied_at = EventCopy.objects.get().received_at

    with transaction.atomic():
        report = projector.fold_round(batch=10)  # a set on its own, without the sweep's count

    order = CardOrder.objects.get()
    assert report.orders == 1 and report.copies == 1
    assert OperationEvent.objects.get().times_received == 2
    assert order.last_event_at == copied_at


def test_a_retry_folds_the_order_its_first_delivery_stored_but_died_before_folding(
    issuer, post_notification
):
    steps = lifecycle()[:2]
    store(issuer, steps)  # committed, then the process died before its fold
    order = CardOrder.objects.get()
    assert order.event_count == 0

    assert post_notification({"operations": steps[1:]}).status_code == 204  # D1's retry

    order.refresh_from_db()
    assert order.event_count == 2 and order.production_status == steps[1]["details"]["status"]
    assert order_events_waiting(order.pk) == 0


def test_a_post_folds_each_of_its_orders_however_many_events_another_one_has(issuer):
    many = [{**i, "cardId": "card-many"} for i in lifecycle()[:9]]
    store(issuer, many)  # stored first: its nine events sort before the other's one
    store(issuer, [{**lifecycle()[0], "cardId": "card-one"}])
    orders = {o.card_id: o for o in CardOrder.objects.all()}

    projector.fold_scope(FoldScope(order_ids=frozenset(o.pk for o in orders.values())))

    assert {o.card_id: o.event_count for o in CardOrder.objects.all()} == {
        "card-many": 9,
        "card-one": 1,
    }
