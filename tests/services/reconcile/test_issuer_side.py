"""The issuer's side against the D1 sandbox over real HTTP: silent registered orders are asked
about by card, D1's long 404 becomes an exception, a re-ordered card supersedes its older order,
and any card can be looked up from the shell."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.items import body, item
from tracking.domain import conditions
from tracking.intake.card_operations import UNKNOWN_AT_D1
from tracking.models import AuditEntry, CardOrder, Issuer, ReconcileAttempt
from tracking.observability.alerts import alerts_current
from tracking.selectors import order_queues
from tracking.services.audit import Actor
from tracking.services.reconcile import (
    order_due_reason,
    order_reconcile,
    orders_due_for_reconcile,
    reconcile_sweep,
)
from tracking.services.registration import Registration, orders_register

pytestmark = pytest.mark.django_db


def register(card_id: str, operation_id: str = "", *, ago: timedelta = timedelta(0)) -> CardOrder:
    (done,) = orders_register(
        registrations=[Registration(ISSUER_ID, card_id, operation_id)],
        actor=Actor.of_command("tests"),
        now=timezone.now() - ago,
    )
    return CardOrder.objects.get(pk=done.order_id)


# ---------------------------------------------------------------------------- silent


def test_a_registered_order_turns_silent_after_its_issuers_threshold(issuer, settings):
    Issuer.objects.create(issuer_id="ISSUERX002", name="Other Bank")
    settings.REGISTERED_SILENT_AFTER = timedelta(hours=6)
    settings.REGISTERED_SILENT_OVERRIDES = {"ISSUERX002": 3600}
    fresh = register("card-fresh", ago=timedelta(hours=2))
    old = register("card-old", ago=timedelta(hours=7))
    (done,) = orders_register(
        registrations=[Registration("ISSUERX002", "card-other")],
        actor=Actor.of_command("tests"),
        now=timezone.now() - timedelta(hours=2),
    )
    now = timezone.now()

    silent = set(CardOrder.objects.filter(order_queues.silent_q(now=now)))

    assert silent == {old, CardOrder.objects.get(pk=done.order_id)}
    assert fresh not in set(orders_due_for_reconcile(now=now))
    assert old in set(orders_due_for_reconcile(now=now))
    assert order_due_reason(order=old, now=now) == "silent"
    assert order_queues.is_silent(old, now=now) and not order_queues.is_silent(fresh, now=now)


def test_the_silence_alert_counts_silent_orders(issuer, settings):
    settings.REGISTERED_SILENT_AFTER = timedelta(hours=1)
    for n in range(3):
        register(f"card-quiet-{n}", ago=timedelta(hours=2))

    (alert,) = [a for a in alerts_current() if a.kind == "inbound_silence"]

    assert alert.subject == ISSUER_ID
    assert alert.silent_orders == 3
    assert "3 registered order(s)" in alert.message


def test_the_sweep_asks_d1_about_a_silent_order_and_d1s_answer_joins_it(d1, issuer, settings):
    settings.REGISTERED_SILENT_AFTER = timedelta(minutes=5)
    order = register("card-dropped", ago=timedelta(hours=1))  # no operation_id given
    steps = [item("card-dropped", "CARD_PROD_REQUESTED"), item("card-dropped", "DATA_PREPARED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)  # D1 sent both; the portal got neither

    result = reconcile_sweep(inline=True)

    assert [r.order_id for r in result.results] == [order.pk]
    order.refresh_from_db()
    assert order.operation_id == "op-card-dropped"
    assert order.production_status == "DATA_PREPARED"
    assert order.event_count == 1
    assert not order_queues.is_silent(order, now=timezone.now())
    attempt = ReconcileAttempt.objects.get()
    assert (attempt.outcome, attempt.reason) == ("changed", "silent")


def test_d1s_404_for_longer_than_the_threshold_makes_an_exception(d1, issuer, settings):
    settings.REGISTERED_SILENT_AFTER = timedelta(minutes=5)
    settings.REGISTERED_NOT_FOUND_AFTER = timedelta(hours=1)
    order = register("card-never-loaded", "op-never", ago=timedelta(hours=1))

    first = order_reconcile(order_id=order.pk)

    order.refresh_from_db()
    assert first.outcome == "not_found"
    assert order.d1_not_found_since is not None
    assert order.exception_reason == ""
    assert order.reconcile_next_at is not None  # backs off like any other order
    assert not conditions.is_exception(order)

    # D1 has still not heard of it an hour and more later.
    order.d1_not_found_since -= timedelta(hours=2)
    order.reconcile_next_at = None
    order.save(update_fields=["d1_not_found_since", "reconcile_next_at"])
    order_reconcile(order_id=order.pk)

    order.refresh_from_db()
    assert order.exception_reason == UNKNOWN_AT_D1
    assert order in CardOrder.objects.filter(order_queues.open_exception_q())

    # Once D1 knows the card, the exception goes.
    d1.truth_record(
        issuer_id=ISSUER_ID,
        items=[item("card-never-loaded", "CARD_PROD_REQUESTED") | {"operationId": "op-never"}],
    )
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert order.exception_reason == "" and order.d1_not_found_since is None
    assert order.production_status == "CARD_PROD_REQUESTED"


# ---------------------------------------------------------------------------- re-ordered card


def test_reconciling_a_reordered_cards_old_order_supersedes_it(d1, issuer, post_notification):
    old_steps = [
        item("card-reordered", "CARD_PROD_REQUESTED"),
        item("card-reordered", "DATA_PREPARED"),
    ]
    new = item("card-reordered", "CARD_PROD_READY") | {
        "operationId": "op-card-reordered-2",
        "startTime": "2026-03-09T10:00:00.000Z",
    }
    assert post_notification({"operations": old_steps}).status_code == 204
    d1.truth_record(issuer_id=ISSUER_ID, items=[*old_steps, new])  # productionStatus: the newest
    old = CardOrder.objects.get()

    order_reconcile(order_id=old.pk)

    old.refresh_from_db()
    newer = CardOrder.objects.get(operation_id="op-card-reordered-2")
    assert old.superseded_by == newer
    assert old.production_status == "DATA_PREPARED"  # the answer went to its own operation
    assert newer.production_status == "CARD_PROD_READY"
    assert old.pk not in set(orders_due_for_reconcile(now=timezone.now() + timedelta(days=30)))
    assert newer.superseded_by is None


def test_a_sweep_claim_made_before_the_order_was_superseded_asks_d1_nothing(
    d1, issuer, post_notification
):
    old_steps = [item("card-claimed", "CARD_PROD_REQUESTED")]
    new = item("card-claimed", "CARD_PROD_READY") | {
        "operationId": "op-card-claimed-2",
        "startTime": "2026-03-09T10:00:00.000Z",
    }
    assert post_notification({"operations": old_steps}).status_code == 204
    d1.truth_record(issuer_id=ISSUER_ID, items=[*old_steps, new])
    old = CardOrder.objects.get()
    # The sweep claims the old order; meanwhile the card's newer operation supersedes it.
    CardOrder.objects.filter(pk=old.pk).update(
        reconcile_claimed_until=timezone.now() + timedelta(minutes=5)
    )
    assert post_notification({"operations": [new]}).status_code == 204
    old.refresh_from_db()
    assert old.superseded_by is not None
    calls = d1.stats()["status_requests"].get("total", 0)

    result = order_reconcile(order_id=old.pk)

    assert result.outcome == "skipped"
    assert d1.stats()["status_requests"].get("total", 0) == calls
    assert not ReconcileAttempt.objects.filter(order=old).exists()
    old.refresh_from_db()
    assert old.reconcile_claimed_until is None
    # Staff may still ask on purpose.
    assert order_reconcile(order_id=old.pk, trigger="staff").outcome != "skipped"


# ---------------------------------------------------------------------------- look-up


def test_looking_up_a_card_the_portal_never_saw_creates_its_order(d1, issuer):
    d1.truth_record(issuer_id=ISSUER_ID, items=[item("card-unseen", "CARD_PROD_ONGOING")])
    out = StringIO()

    call_command("reconcile", card=f"{ISSUER_ID}/card-unseen", stdout=out)

    order = CardOrder.objects.get(card_id="card-unseen")
    assert order.production_status == "CARD_PROD_ONGOING"
    assert "D1 answered 200" in out.getvalue()
    assert f"Created order {order.pk}" in out.getvalue()
    attempt = ReconcileAttempt.objects.get(order=order)
    assert (attempt.trigger, attempt.reason, attempt.outcome) == ("command", "look_up", "changed")
    audit = AuditEntry.objects.get(action="order.look_up")
    assert audit.target_id == str(order.pk)
    assert audit.details["card_id"] == "card-unseen"


def test_looking_up_a_known_card_applies_and_records_the_answer_as_reconcile_does(
    d1, issuer, post_notification
):
    steps = [
        item("card-known", s) for s in ("CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY")
    ]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    assert post_notification(body(*steps[:2])).status_code == 204

    call_command("reconcile", card=f"{ISSUER_ID}/card-known", stdout=StringIO())

    order = CardOrder.objects.get(card_id="card-known")
    attempt = ReconcileAttempt.objects.get(order=order)
    assert (attempt.reason, attempt.outcome) == ("look_up", "changed")
    # What the order was before D1's answer, not after (both were the new status once).
    assert (attempt.status_before, attempt.status_after) == ("DATA_PREPARED", "CARD_PROD_READY")
    assert attempt.answer["productionStatus"] == "CARD_PROD_READY"
    assert order.d1_answer["fingerprints"] and order.last_reconcile_outcome == "changed"


def test_looking_up_a_card_d1_does_not_know_says_so_and_creates_nothing(d1, issuer):
    out = StringIO()

    call_command("reconcile", card=f"{ISSUER_ID}/card-nobody-knows", stdout=out)

    assert "D1 answered 404" in out.getvalue()
    assert "No order of this card" in out.getvalue()
    assert not CardOrder.objects.exists()
    assert AuditEntry.objects.get(action="order.look_up").details["http_status"] == 404


def test_the_look_up_command_names_bad_input(issuer):
    with pytest.raises(CommandError, match="ISSUER/CARD"):
        call_command("reconcile", card="card-without-issuer")
    with pytest.raises(CommandError, match="Unknown or inactive issuer"):
        call_command("reconcile", card="NOSUCHISSU/card-1")
    with pytest.raises(CommandError, match="not a D1 cardId"):
        call_command("reconcile", card=f"{ISSUER_ID}/card with spaces")
