"""`manage.py rederive` on orders stored under RULES_VERSION 2: carrier classes, holds, status
classes and zones come right, and the read API and the queues follow."""

from __future__ import annotations

import io
import random

import pytest
from django.core.management import call_command

from tests.services.reconcile.items import item
from tracking.domain.fold import RULES_VERSION
from tracking.models import CardOrder
from tracking.selectors import order_queues

pytestmark = pytest.mark.django_db

# What RULES_VERSION 2 stored for these orders: carrier words it did not know were unknown codes
# (in Exceptions and asking D1), classes were not stored, SUCCESSFUL before shipment was open.
V2_COLUMNS = {
    "aftership-delivered": {
        "unknown_codes": ["shipment:Delivered"],
        "has_unknown_status": True,
        "shipment_final": False,
        "needs_reconcile": True,
        "reconcile_reason": "unknown_status",
    },
    "aftership-transit": {
        "unknown_codes": ["shipment:InTransit"],
        "has_unknown_status": True,
        "needs_reconcile": True,
        "reconcile_reason": "unknown_status",
    },
    "done-successful": {"is_terminal": False},
}


def done_successful() -> dict:
    payload = item("done-successful", "CARD_PROD_DONE")
    payload["status"], payload["endTime"] = "SUCCESSFUL", "2026-03-04T16:40:51.007Z"
    return payload


@pytest.fixture
def v2_database(issuer, post_notification):
    items = [
        item("aftership-delivered", "CARD_SHIPPED", shipment_status="Delivered"),
        item("aftership-transit", "CARD_SHIPPED", shipment_status="InTransit"),
        item("done-successful", "CARD_PROD_ONGOING"),
        done_successful(),
    ]
    random.Random(3).shuffle(items)
    for payload in items:
        assert post_notification({"operations": [payload]}).status_code == 204
    CardOrder.objects.update(rules_version=2, shipment_class="")
    for card_id, columns in V2_COLUMNS.items():
        CardOrder.objects.filter(card_id=card_id).update(**columns)
    return issuer


def rederive(*args: str) -> str:
    out = io.StringIO()
    call_command("rederive", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def in_queue(key: str) -> set[str]:
    condition = order_queues.QUEUES[key].q(now=None)
    return set(CardOrder.objects.filter(condition).values_list("card_id", flat=True))


def test_the_v2_database_shows_the_old_bugs(v2_database):
    assert in_queue("exceptions") >= {"aftership-delivered", "aftership-transit"}
    assert "aftership-delivered" not in in_queue("delivered")
    assert "done-successful" in in_queue("open")


def test_rederive_brings_carrier_classes_holds_and_status_classes_up_to_date(
    v2_database, order_state
):
    report = rederive("--outdated")
    assert "shipment_class:" in report
    assert set(CardOrder.objects.values_list("rules_version", flat=True)) == {RULES_VERSION}

    delivered = order_state("aftership-delivered")
    assert delivered["shipment"]["status"] == "Delivered"  # as sent
    assert delivered["shipment"]["normalized_status"] == "delivered"
    assert (delivered["unknown_codes"], delivered["needs_reconcile"]) == ([], False)
    transit = order_state("aftership-transit")
    assert transit["shipment"]["normalized_status"] == "in_transit"
    assert order_state("done-successful")["is_terminal"] is True

    assert in_queue("exceptions").isdisjoint(
        {"aftership-delivered", "aftership-transit", "done-successful"}
    )
    assert in_queue("delivered") == {"aftership-delivered"}
    assert "done-successful" not in in_queue("open")
    # A second run finds nothing outdated and nothing to change.
    again = rederive("--dry-run")
    assert "Orders whose state changes: 0;" in again
