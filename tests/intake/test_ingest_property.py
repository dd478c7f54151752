"""The real ingest path: any subset, duplication, batching and arrival order gives one state."""

from __future__ import annotations

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.domain.test_rules import lifecycle
from tests.intake import streams
from tracking.intake.ingest import ingest_operations
from tracking.models import CardOrder, NotificationDelivery

pytestmark = pytest.mark.django_db

# Columns that depend on when items arrived, not on what they say.
ARRIVAL_COLUMNS = {
    "id",
    "created_at",
    "updated_at",
    "stage_first_seen",
    "stage_entered_at",
    "first_event_at",
    "last_event_at",
    "exception_changed_at",
}


class Rollback(Exception):
    pass


def final_state(issuer, deliveries: list[list[dict]]) -> dict:
    """Ingest the deliveries one by one, read the order, and roll everything back."""
    state: dict = {}
    try:
        with transaction.atomic():
            for operations in deliveries:
                delivery = NotificationDelivery.objects.create(issuer=issuer, status_code=204)
                ingest_operations(issuer=issuer, operations=operations, delivery=delivery)
            order = CardOrder.objects.get()
            state = {
                f.name: getattr(order, f.attname)
                for f in CardOrder._meta.concrete_fields
                if f.name not in ARRIVAL_COLUMNS
            }
            raise Rollback
    except Rollback:
        pass
    return state


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_arrival_of_a_subset_gives_the_state_of_the_sorted_set(issuer, data):
    items = lifecycle()
    chosen = data.draw(st.sets(st.integers(0, len(items) - 1), min_size=1), label="subset")
    notifications = [items[i] for i in sorted(chosen)]
    copies = data.draw(st.lists(st.sampled_from(notifications), max_size=len(notifications)))
    arrival = data.draw(st.permutations(notifications + copies), label="arrival")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=len(arrival), max_size=len(arrival)))
    deliveries, rest = [], list(arrival)
    for size in sizes:
        if rest:
            deliveries.append(rest[:size])
            rest = rest[size:]

    assert final_state(issuer, deliveries) == final_state(issuer, [notifications])


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=streams.order_items, data=st.data())
def test_random_times_in_any_arrival_and_batching_give_one_state(issuer, items, data):
    """Completions, failures, copies, holds, carrier updates and bare results with D1's times."""
    copies = data.draw(st.lists(st.sampled_from(items), max_size=3), label="copies")
    arrival = data.draw(st.permutations(items + copies), label="arrival")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=len(arrival), max_size=len(arrival)))

    assert final_state(issuer, streams.batched(arrival, sizes)) == final_state(issuer, [items])
