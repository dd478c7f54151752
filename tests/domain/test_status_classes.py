"""The status classes are written once: queues, partial indexes and colours agree on them.

The partial indexes are built from the queues' conditions, so a queue that changes its rule
changes its index with it (a migration). These tests read each index's condition back from the
database itself (SQLite and PostgreSQL) and check it selects exactly the orders of its queue.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.utils import timezone

from tracking.admin import display as admin_display
from tracking.domain import conditions
from tracking.domain.carrier_status import FINAL_CLASSES, carrier_status_class
from tracking.domain.statuses import (
    CANCELLED_STATUSES,
    FAILED_PRODUCTION_STATUSES,
    FAILURE_STATUSES,
    NON_TERMINAL_STATUSES,
    PRODUCTION_RANK,
    TERMINAL_STATUSES,
)
from tracking.models import CardOrder
from tracking.selectors import order_queues

pytestmark = pytest.mark.django_db

INDEXED_QUEUES = {
    "order_exception_recent": conditions.exception_q,
    "order_superseded_recent": conditions.superseded_q,
    "order_waiting_stage": conditions.waiting_q,
}


def test_each_partial_index_is_built_from_its_queue_condition():
    indexes = {index.name: index for index in CardOrder._meta.indexes}
    for name, condition in INDEXED_QUEUES.items():
        assert indexes[name].condition == condition(), name


def index_predicate(name: str) -> str:
    """The WHERE clause of a partial index, as the database stored it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        else:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = %s", [name]
            )
        (definition,) = cursor.fetchone()
    return re.split(r"\bWHERE\b", definition, maxsplit=1, flags=re.IGNORECASE)[1]


def orders_of_every_class(issuer) -> list[CardOrder]:
    """One order per production status and operation status, and one per flag or error."""
    now = timezone.now()
    rows = []
    n = 0

    def add(**fields):
        nonlocal n
        n += 1
        rows.append(
            CardOrder(
                issuer=issuer,
                card_id=f"card-class-{n:03d}",
                operation_id=f"op-class-{n:03d}",
                stage_entered_at=now - dt.timedelta(days=30),
                **fields,
            )
        )

    for status in [*PRODUCTION_RANK, "", "ON_HOLD_X"]:
        for operation_status in ("PENDING", "SUCCESSFUL", "FAILED"):
            add(
                production_status=status,
                operation_status=operation_status,
                # D1's SUCCESSFUL or FAILED ends the operation at any step.
                is_terminal=status in TERMINAL_STATUSES or operation_status != "PENDING",
            )
    add(production_status="CARD_PROD_READY", has_conflict=True)
    add(production_status="CARD_PROD_READY", has_unknown_status=True)
    add(production_status="CARD_PROD_READY", error_code="E42")
    add(production_status="CARD_PROD_READY", exception_reason="d1_not_found")
    for carrier_word in (
        "IN_TRANSIT",
        "DELIVERED",
        "RETURNED",
        "RETURNED_TO_SENDER",
        "InTransit",
        "Delivered_001",
        "Exception_011",
        "Exception_013",
        "AttemptFail",
        "Colis en attente",
    ):
        klass = carrier_status_class(carrier_word)
        add(
            production_status="CARD_SHIPPED",
            is_terminal=True,
            shipment_status=carrier_word,
            shipment_class=klass,
            shipment_final=klass in FINAL_CLASSES,
        )
    add(production_status="CARD_PROD_READY", cancel_accepted_at=now)
    add(production_status="CARD_PROD_CANCELED", is_terminal=True, cancel_accepted_at=now)
    orders = CardOrder.objects.bulk_create(rows)
    superseding = orders[0]
    CardOrder.objects.filter(pk=orders[1].pk).update(superseded_by=superseding)
    return list(CardOrder.objects.all())


def test_every_partial_index_selects_exactly_its_queue_on_this_database(issuer):
    orders_of_every_class(issuer)
    for name, condition in INDEXED_QUEUES.items():
        predicate = index_predicate(name)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {CardOrder._meta.db_table} WHERE {predicate}")
            by_index = {row[0] for row in cursor.fetchall()}
        by_queue = set(CardOrder.objects.filter(condition()).values_list("pk", flat=True))
        assert by_index == by_queue, name
        assert by_queue, f"{name}: the fixture has no order of this class"


def test_the_exception_rule_in_memory_matches_the_query(issuer):
    orders = orders_of_every_class(issuer)
    queried = set(CardOrder.objects.filter(conditions.exception_q()).values_list("pk", flat=True))
    in_memory = {o.pk for o in orders if conditions.is_exception(o)}
    assert in_memory == queried
    # The classes, spelled out: a failure of production is an exception, a cancellation is not.
    for order in orders:
        if order.production_status in FAILED_PRODUCTION_STATUSES:
            assert order.pk in queried
        if order.production_status in CANCELLED_STATUSES and not (
            order.has_conflict or order.error_code
        ):
            assert order.pk not in queried


def test_the_failed_rule_in_memory_matches_the_query(issuer):
    orders = orders_of_every_class(issuer)
    queried = set(CardOrder.objects.filter(conditions.failed_q()).values_list("pk", flat=True))
    assert {o.pk for o in orders if conditions.is_failed(o)} == queried
    assert queried  # the classes include failed orders


def test_the_colours_follow_the_status_classes():
    for status in FAILED_PRODUCTION_STATUSES:
        assert admin_display.production_tone(status) == "danger"
    for status in CANCELLED_STATUSES:
        assert admin_display.production_tone(status) == "neutral"
    assert FAILURE_STATUSES == FAILED_PRODUCTION_STATUSES | CANCELLED_STATUSES
    for status in NON_TERMINAL_STATUSES:
        assert admin_display.production_tone(status) == "info"


def test_stuck_is_one_rule_for_the_queue_the_dashboard_and_the_alert(issuer, settings):
    from tracking.observability.state import operations_state
    from tracking.selectors.dashboard import dashboard_figures

    settings.RECONCILE_STAGE_THRESHOLDS = {"DATA_PREPARED": 3600}
    orders = orders_of_every_class(issuer)
    now = timezone.now()
    queue = CardOrder.objects.filter(order_queues.QUEUES["stuck"].q(now=now))
    assert sum(operations_state(now=now).stuck_by_stage.values()) == queue.count() > 0
    assert dashboard_figures(now=now).total_stuck == queue.count()
    assert {o.pk for o in orders if order_queues.is_stuck(o, now=now)} == {o.pk for o in queue}
    for order in queue:
        # A FAILED operation at a step of the path, or a superseded order, waits for nothing.
        assert not order.is_terminal and order.superseded_by_id is None
