"""Numeric card ids that pass the Luhn check, asked about at the D1 sandbox over real HTTP: D1's
answer is stored with the ids whole, joins the registered order, and is audited with the id."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.items import body, item
from tracking.domain.masking import luhn_valid
from tracking.models import AuditEntry, CardOrder, OperationEvent, ReconcileAttempt
from tracking.services.audit import Actor
from tracking.services.reconcile import order_reconcile, reconcile_sweep
from tracking.services.registration import Registration, orders_register

pytestmark = pytest.mark.django_db

CARD_ID = "1234567890123452"
REQUEST_ID = "4111111111111111"


def numeric(status: str) -> dict:
    sent = item(CARD_ID, status)
    sent["operationId"] = "5500000000000004"
    sent["issuerRequestId"] = REQUEST_ID
    return sent


def test_the_ids_pass_the_luhn_check():
    assert luhn_valid(CARD_ID) and luhn_valid(REQUEST_ID) and luhn_valid("5500000000000004")


def test_reconciling_a_numeric_card_stores_d1s_answer_with_its_ids_whole(
    d1, issuer, post_notification
):
    steps = [numeric("CARD_PROD_REQUESTED"), numeric("DATA_PREPARED")]
    d1.truth_record(issuer_id=ISSUER_ID, items=steps)
    assert post_notification(body(steps[0])).status_code == 204
    order = CardOrder.objects.get()

    result = order_reconcile(order_id=order.pk)

    assert result.outcome == "changed"
    order.refresh_from_db()
    assert (order.card_id, order.operation_id) == (CARD_ID, "5500000000000004")
    assert (order.production_status, order.issuer_request_id) == ("DATA_PREPARED", REQUEST_ID)
    answered = OperationEvent.objects.get(source="on_demand")
    assert answered.payload == steps[1] and answered.outcome == "advanced"


def test_the_sweep_joins_a_registered_numeric_card_with_d1s_answer(d1, issuer, settings):
    settings.REGISTERED_SILENT_AFTER = timedelta(minutes=5)
    (done,) = orders_register(
        registrations=[Registration(ISSUER_ID, CARD_ID, issuer_request_id=REQUEST_ID)],
        actor=Actor.of_command("tests"),
        now=timezone.now() - timedelta(hours=1),
    )
    d1.truth_record(issuer_id=ISSUER_ID, items=[numeric("CARD_PROD_ONGOING")])

    reconcile_sweep(inline=True)

    order = CardOrder.objects.get()
    assert order.pk == done.order_id
    assert (order.operation_id, order.production_status) == (
        "5500000000000004",
        "CARD_PROD_ONGOING",
    )
    assert ReconcileAttempt.objects.get().outcome == "changed"


def test_looking_up_a_numeric_card_creates_its_order_and_audits_the_id_whole(d1, issuer):
    d1.truth_record(issuer_id=ISSUER_ID, items=[numeric("CARD_PROD_ONGOING")])
    out = StringIO()

    call_command("reconcile", card=f"{ISSUER_ID}/{CARD_ID}", stdout=out)

    order = CardOrder.objects.get(card_id=CARD_ID)
    assert order.production_status == "CARD_PROD_ONGOING"
    assert f"Created order {order.pk}" in out.getvalue()
    audit = AuditEntry.objects.get(action="order.look_up")
    assert audit.details["card_id"] == CARD_ID
