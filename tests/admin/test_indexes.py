"""The indexes the admin relies on at a million orders, as PostgreSQL plans them."""

from __future__ import annotations

import pytest
from django.db import connection

from tracking.domain import conditions
from tracking.models import CardOrder
from tracking.selectors import order_queues

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def plan(queryset, *, plain_index_scans: bool = True) -> str:
    """The plan PostgreSQL picks when it may not scan the table (so a usable index shows).

    The test table is tiny; at a million rows the planner prefers these indexes on its own
    (see bench/admin_bench.py).
    """
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        if not plain_index_scans:
            # Otherwise a walk of any btree index in full also "avoids" the table scan.
            cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_file_name_part_search_uses_the_trigram_index(orders):
    found = CardOrder.objects.filter(input_file_name__icontains="20261121_US")
    assert "order_input_file_name_trgm" in plan(found, plain_index_scans=False)
    assert found.count() > 0


def test_the_exceptions_queue_uses_its_partial_index(orders):
    queue = CardOrder.objects.filter(conditions.exception_q()).order_by("-updated_at")[:50]
    chosen = plan(queue)
    # Both partial indexes are built for exceptions (the queue's order, and triage's cursor); on
    # a tiny table the planner's pick between the two is a coin toss of cost estimates.
    exception_indexes = ("order_exception_recent", "order_exception_flagged")
    assert any(name in chosen for name in exception_indexes), chosen
    assert "Seq Scan" not in chosen, chosen


def test_the_stuck_queue_uses_the_stage_index(orders):
    from django.utils import timezone

    stuck = CardOrder.objects.filter(order_queues.stuck_q(now=timezone.now()))
    # An index on the stage entry time serves it (order_waiting_stage is made for it); on a tiny
    # table the planner's pick among them is a coin toss of cost estimates.
    chosen = plan(stuck)
    stage_indexes = ("order_waiting_stage", "order_status_stage")
    assert any(name in chosen for name in stage_indexes), chosen


def test_the_list_in_its_default_order_is_one_index_walk(orders):
    recent = CardOrder.objects.order_by("-updated_at", "-id")[:50]
    chosen = plan(recent)
    assert "order_recent" in chosen and "Sort" not in chosen, chosen
