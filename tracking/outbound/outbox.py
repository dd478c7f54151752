"""Writing events to the outbox, in the transaction that changed the orders.

Each write point takes the orders' facts before its write (`facts_before`) and calls
`events_record` after it; `tracking.outbound.changes` decides the event types. An event owes a
delivery to each enabled endpoint of its issuer that wants its type; the deliveries are queued
after the commit (`tracking.outbound.delivery`), and the periodic sweep queues what a lost
message left behind.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from celery import shared_task
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Subquery
from django.utils import timezone

from tracking.models.outbound import DeliveryStatus, EventDelivery, EventEndpoint, OutboundEvent
from tracking.outbound.changes import (
    EXCEPTION,
    FAILED_EVENT,
    SILENT,
    OrderFacts,
    change_events,
    order_facts,
)
from tracking.outbound.delivery import deliveries_enqueue, deliveries_sweep
from tracking.selectors.order_representation import order_representations

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def event_id_new() -> str:
    """`evt_` and 26 characters: 48 bits of milliseconds then 80 random bits (ULID's layout)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "evt_" + "".join(reversed(chars))


def facts_before(orders: Iterable) -> dict[int, OrderFacts]:
    """The facts of `orders` as they are in memory, before a write changes them."""
    return {order.pk: order_facts(order) for order in orders}


def events_record(
    orders: Sequence,
    *,
    before: Mapping[int, OrderFacts],
    rederive: bool = False,
    now=None,
) -> list[OutboundEvent]:
    """Write the events of the changes from `before` to the orders' state in memory.

    Writes nothing (and reads nothing) when no order's facts changed. The orders must be
    saved already and locked by the caller.
    """
    changes: dict[int, list[str]] = {}
    for order in orders:
        prior = before.get(order.pk)
        if prior is None:
            continue
        types = change_events(prior, order_facts(order))
        if types:
            changes[order.pk] = types
    if not changes:
        return []
    return _events_write(changes, rederive=rederive, now=now)


def registered_record(order_ids: Iterable[int], *, now=None) -> list[OutboundEvent]:
    """`card_order.registered` for orders the issuer just registered (new orders only)."""
    changes = {pk: change_events(None, OrderFacts()) for pk in order_ids}
    return _events_write(changes, now=now) if changes else []


def superseded_record(order_ids: Iterable[int], *, now=None) -> list[OutboundEvent]:
    """`card_order.superseded` for orders a newer operation of their card just replaced."""
    changes = {
        pk: change_events(OrderFacts(), OrderFacts(superseded=True)) for pk in set(order_ids)
    }
    return _events_write(changes, now=now) if changes else []


def silent_sweep(*, now=None, limit: int = 500) -> int:
    """`card_order.silent`, once, for registered orders D1 has been silent about too long.

    Each order is locked (ingest's lock order) and checked again, so an order D1 spoke about
    meanwhile is left alone. Returns how many events were written.
    """
    from tracking.models import CardOrder
    from tracking.selectors.order_queues import silent_q

    now = now or timezone.now()
    said = OutboundEvent.objects.filter(order=OuterRef("pk"), type=SILENT)
    due = (
        CardOrder.objects.filter(silent_q(now=now))
        .exclude(Exists(said))
        .values_list("pk", flat=True)[:limit]
    )
    ids = list(due)
    if not ids:
        return 0
    with transaction.atomic():
        locked = list(
            CardOrder.objects.filter(silent_q(now=now), pk__in=ids)
            .exclude(Exists(said))
            .order_by("issuer_id", "card_id", "operation_id")
            .select_for_update()
            .values_list("pk", flat=True)
        )
        changes = {pk: change_events(OrderFacts(), OrderFacts(silent=True)) for pk in locked}
        return len(_events_write(changes, now=now)) if changes else 0


def _events_write(
    changes: Mapping[int, list[str]], *, rederive: bool = False, now=None
) -> list[OutboundEvent]:
    """Insert the events of `changes` (order id → types) and the deliveries they owe."""
    from tracking.models import CardOrder

    now = now or timezone.now()
    # One read: the orders as the read API needs them, each with its last sequence.
    last_sequence = (
        OutboundEvent.objects.filter(order=OuterRef("pk"))
        .order_by()
        .values("order")
        .annotate(last=Max("sequence"))
        .values("last")
    )
    orders = (
        CardOrder.objects.select_related("issuer", "prediction")
        .annotate(last_sequence=Subquery(last_sequence))
        .in_bulk(list(changes))
    )
    ordered = [orders[pk] for pk in sorted(orders)]
    # The read API's representation (its fields render dates and times as text already).
    shown_all = order_representations(ordered)
    events: list[OutboundEvent] = []
    for order, shown in zip(ordered, shown_all, strict=True):
        pk = order.pk
        sequence = order.last_sequence or 0
        for event_type in changes[pk]:
            sequence += 1
            data = {"sequence": sequence, "rederive": rederive, "order": shown}
            if event_type in (EXCEPTION, FAILED_EVENT):
                data["reason"] = order_facts(order).exception_reason
            events.append(
                OutboundEvent(
                    event_id=event_id_new(),
                    issuer_id=order.issuer_id,
                    order_id=pk,
                    type=event_type,
                    sequence=sequence,
                    payload=data,
                    rederive=rederive,
                    created_at=now,
                )
            )
    if connection.vendor == "postgresql":
        owed = _pg_insert(events, now=now)
        if settings.EVENT_DELIVERY_ON_COMMIT and owed:
            transaction.on_commit(lambda: deliveries_enqueue(owed))
    else:
        OutboundEvent.objects.bulk_create(events)
        deliveries_owe(events, now=now)
    return events


def _pg_insert(events: list[OutboundEvent], *, now) -> list[int]:
    """The events and the deliveries they owe (the issuers' enabled endpoints that want their
    type) in one statement; returns the deliveries' ids. The rows travel as one JSON document."""
    event_table, delivery_table, endpoint_table = (
        connection.ops.quote_name(m._meta.db_table)
        for m in (OutboundEvent, EventDelivery, EventEndpoint)
    )
    rows = [
        {
            "event_id": e.event_id,
            "issuer_id": e.issuer_id,
            "order_id": e.order_id,
            "type": e.type,
            "sequence": e.sequence,
            "payload": e.payload,
            "rederive": e.rederive,
        }
        for e in events
    ]
    # Only table names from the models' metadata are interpolated; values are parameters.
    sql = f"""
WITH e AS (
  INSERT INTO {event_table} (event_id, issuer_id, order_id, type, sequence, payload, rederive,
    created_at)
  SELECT r.event_id, r.issuer_id, r.order_id, r.type, r.sequence, r.payload, r.rederive, %(now)s
  FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(event_id text, issuer_id bigint,
    order_id bigint, type text, sequence integer, payload jsonb, rederive boolean)
  RETURNING id, issuer_id, type
),
d AS (
  INSERT INTO {delivery_table} (event_id, endpoint_id, status, is_replay, attempts,
    next_attempt_at, created_at, last_error)
  SELECT e.id, p.id, %(pending)s, false, 0, %(now)s, %(now)s, ''
  FROM e JOIN {endpoint_table} p ON p.issuer_id = e.issuer_id AND p.enabled
    AND (p.event_types = '[]'::jsonb OR p.event_types ? e.type)
  RETURNING id
)
SELECT ARRAY(SELECT id FROM d)
"""  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "rows": json.dumps(rows, cls=DjangoJSONEncoder),
                "now": now,
                "pending": DeliveryStatus.PENDING,
            },
        )
        return list(cursor.fetchone()[0])


def deliveries_owe(
    events: Sequence[OutboundEvent],
    *,
    endpoints: Sequence[EventEndpoint] | None = None,
    is_replay: bool = False,
    now=None,
) -> list[EventDelivery]:
    """One delivery per event and enabled endpoint of its issuer that wants its type (or of
    `endpoints`, for a replay), due now; queued after the commit."""
    if not events:
        return []
    now = now or timezone.now()
    if endpoints is None:
        endpoints = list(
            EventEndpoint.objects.filter(issuer_id__in={e.issuer_id for e in events}, enabled=True)
        )
    by_issuer: dict[int, list[EventEndpoint]] = defaultdict(list)
    for endpoint in endpoints:
        by_issuer[endpoint.issuer_id].append(endpoint)
    owed = [
        EventDelivery(
            event=event, endpoint=endpoint, is_replay=is_replay, next_attempt_at=now, created_at=now
        )
        for event in events
        for endpoint in by_issuer.get(event.issuer_id, [])
        if is_replay or endpoint.wants(event.type)
    ]
    if not owed:
        return []
    EventDelivery.objects.bulk_create(owed)
    ids = [d.pk for d in owed if d.pk is not None]
    if settings.EVENT_DELIVERY_ON_COMMIT and ids:
        transaction.on_commit(lambda: deliveries_enqueue(ids))
    return owed


@shared_task(name="tracking.events_sweep")
def events_sweep_task() -> int:
    """Silent orders' events, then every due delivery queued again."""
    silent_sweep()
    return deliveries_sweep()
