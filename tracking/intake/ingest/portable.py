"""Ingest's portable engine: each step in ORM statements of its own, on any backend (SQLite here).

Also the statements the PostgreSQL engine shares: the orders' upsert with the registration join
(`lock_orders`), and the copies counted by fingerprint (`copies_count`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import JSONNull, Q

from tracking.domain.ordering import EventFacts
from tracking.infrastructure.bulk import rows_update, rows_upsert
from tracking.intake.card_operations import UPDATE_ORDER
from tracking.intake.ingest.engine import (
    EVENT_COLUMNS,
    Begun,
    Finished,
    Folded,
    OrderKey,
    StoredEvents,
    event_values,
)
from tracking.intake.ingest.prepare import IngestBatch, PreparedItem
from tracking.intake.ingest.rederive import WRITTEN_COLUMNS
from tracking.intake.locking import card_orders_lock, events_locked, for_update_clause
from tracking.intake.registered_orders import FirstWord, registered_orders_join
from tracking.models import CardOrder, Issuer, NotificationDelivery, OperationEvent

# What ingest reads back of an order it upserts: what the re-derivation compares against.
BOOKKEEPING_FIELDS = [
    "id",
    "card_id",
    "operation_id",
    "event_count",
    "has_conflict",
    "unknown_codes",
    "incomplete_items",
    "missing_steps",
    "needs_reconcile",
    "reconcile_reason",
    "registration",
    "d1_answer",
    # What the outbound events compare (tracking.outbound.changes), as stored before the fold.
    "production_status",
    "production_rank",
    "operation_status",
    "shipment_status",
    "shipment_class",
    "error_code",
    "has_unknown_status",
    "exception_reason",
]


class PortableEngine:
    """`IngestEngine` in ORM statements, one per step's part."""

    def begin(
        self, *, issuer: Issuer, batch: IngestBatch, delivery: NotificationDelivery, now
    ) -> Begun:
        """The delivery saved; the copies counted when every item is stored, else orders locked.

        The look is unlocked; the count locks the events, in fingerprint order.
        """
        items = batch.items
        if delivery.pk is None:
            delivery.save()
        counted: set[str] = set()
        if items and _stored_fingerprints(issuer=issuer, fingerprints=list(items)) == set(items):
            counted = self.copies_count(
                issuer=issuer, copies={f: i.copies for f, i in items.items()}, now=now
            )
        unseen = [item for f, item in items.items() if f not in counted]
        orders = lock_orders(issuer=issuer, items=unseen, now=now) if unseen else {}
        return Begun(counted=counted, orders=orders)

    def events_lock(
        self, *, issuer: Issuer, fingerprints: list[str], order_ids: list[int]
    ) -> StoredEvents:
        """Lock, in fingerprint order, the stored events of the batch and of the locked orders.

        One statement, so that the later writes (copies counted, outcomes saved) lock nothing
        new. Events of a locked order cannot appear meanwhile: only a holder of its lock adds
        them.
        """
        stored = StoredEvents()
        wanted, of_orders = set(fingerprints), set(order_ids)
        rows = events_locked(
            OperationEvent.objects.filter(
                Q(issuer=issuer, fingerprint__in=fingerprints) | Q(order_id__in=order_ids)
            )
        )
        for event_id, order_id, fingerprint, first, last, payload, outcome, applied_at in rows:
            if fingerprint in wanted:
                stored.ids[fingerprint] = event_id
            if order_id in of_orders:
                fact = EventFacts(event_id, fingerprint, first, last, payload)
                stored.facts[order_id].append(fact)
                stored.outcomes[event_id] = (outcome, applied_at is not None)
        return stored

    def finish(
        self, *, issuer: Issuer, folded: Folded, source: str, delivery, batch, now
    ) -> Finished:
        """The new events with their outcomes, the copies, the orders' state, the outcomes."""
        new = events_insert(
            issuer=issuer,
            items=folded.fresh,
            orders=folded.orders,
            new_outcomes=folded.new_outcomes,
            source=source,
            delivery=delivery,
            now=now,
        )
        copies_count(issuer=issuer, copies=folded.copies, now=now)
        rows_update(folded.touched, WRITTEN_COLUMNS)
        rows_update(
            [
                OperationEvent(id=event_id, outcome=outcome, applied_at=now)
                for event_id, outcome in folded.stored_outcomes
            ],
            ["outcome", "applied_at"],
        )
        # No look ahead: the card pass looks at every card whose order got its first events.
        return Finished(new=new, busy_cards=set(folded.first_cards))

    def copies_count(self, *, issuer: Issuer, copies: dict[str, int], now) -> set[str]:
        return copies_count(issuer=issuer, copies=copies, now=now)

    def counts_save(self, delivery: NotificationDelivery) -> None:
        delivery.save(update_fields=["new_count", "duplicate_count", "rejected_count"])


def events_insert(
    *, issuer, items: dict[str, PreparedItem], orders, new_outcomes, source, delivery, now
) -> dict[str, int]:
    """Insert `items` as events (each once, in fingerprint order); return the new ones as
    fingerprint → event id. An item already stored is skipped (`ON CONFLICT DO NOTHING`).

    One statement, its values prepared as `save()` would, without building model instances.
    """
    if not items:
        return {}
    if connection.vendor == "postgresql":
        return _events_insert_unnest(
            issuer=issuer,
            items=items,
            orders=orders,
            new_outcomes=new_outcomes,
            source=source,
            delivery=delivery,
            now=now,
        )
    payload = OperationEvent._meta.get_field("payload")
    when = OperationEvent._meta.get_field("first_received_at")
    stamp = when.get_db_prep_save(now, connection)
    rows: list = []
    for fingerprint in sorted(items):
        values = event_values(items[fingerprint], orders, new_outcomes)
        is_applied = values.pop()
        # JSON null is a value D1 sent, not a missing column (SQL NULL).
        raw = JSONNull() if values[8] is None else values[8]
        values[8] = payload.get_db_prep_save(raw, connection)
        rows += [issuer.pk, delivery.pk, source, stamp, stamp, stamp if is_applied else None]
        rows += values
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in _EVENT_INSERT_COLUMNS)
    row = "(" + ", ".join(["%s"] * len(_EVENT_INSERT_COLUMNS)) + ")"
    sql = (
        f"INSERT INTO {quote(OperationEvent._meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(items))} "
        "ON CONFLICT (issuer_id, fingerprint) DO NOTHING RETURNING fingerprint, id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, rows)
        return dict(cursor.fetchall())


def _events_insert_unnest(
    *, issuer, items: dict[str, PreparedItem], orders, new_outcomes, source, delivery, now
) -> dict[str, int]:
    """`events_insert` on PostgreSQL: the rows as one JSON array, so the statement's text is the
    same for 1 item or 500 (the driver rewrites a long text's placeholders on every call, and
    the server plans each new text afresh) and the values are encoded once, by `json`."""
    stamp = now.isoformat()
    rows = []
    for fingerprint in sorted(items):
        values = event_values(items[fingerprint], orders, new_outcomes)
        values[-1] = stamp if values[-1] else None  # applied_at
        rows.append(values)  # JSON null in the payload stays JSON null
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in _EVENT_INSERT_COLUMNS)
    sql = (
        f"INSERT INTO {quote(OperationEvent._meta.db_table)} ({names}) "  # noqa: S608
        f"SELECT %s, %s, %s, %s, %s, {_JSON_ROW_COLUMNS} FROM jsonb_array_elements(%s::jsonb) AS r "
        "ON CONFLICT (issuer_id, fingerprint) DO NOTHING RETURNING fingerprint, id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [issuer.pk, delivery.pk, source, now, now, json.dumps(rows, cls=_PAYLOAD_ENCODER)]
        )
        return dict(cursor.fetchall())


# Each JSON row of `_events_insert_unnest` is `event_values`' list (`EVENT_COLUMNS`, then
# applied_at), read back in `_EVENT_INSERT_COLUMNS` order: applied_at first.
_SQL_TYPES = {"order": "bigint", "times_received": "integer"}
_JSON_ROW_COLUMNS = ", ".join(
    [f"(r->>{len(EVENT_COLUMNS)})::timestamptz"]
    + [
        f"(r->{n})" if name == "payload" else f"(r->>{n})::{_SQL_TYPES.get(name, 'text')}"
        for n, name in enumerate(EVENT_COLUMNS)
    ]
)
_PAYLOAD_ENCODER = OperationEvent._meta.get_field("payload").encoder

# A new event's columns: the bookkeeping, then `EVENT_COLUMNS` (`event_values`' order).
_EVENT_INSERT_COLUMNS = [
    *("issuer_id", "delivery_id", "source", "first_received_at", "last_received_at"),
    "applied_at",
    *(OperationEvent._meta.get_field(n).column for n in EVENT_COLUMNS),
]


def _stored_fingerprints(*, issuer: Issuer, fingerprints: list[str]) -> set[str]:
    """Which of `fingerprints` are stored as events already (an unlocked look)."""
    return set(
        OperationEvent.objects.filter(issuer=issuer, fingerprint__in=fingerprints).values_list(
            "fingerprint", flat=True
        )
    )


def copies_count(*, issuer: Issuer, copies: dict[str, int], now) -> set[str]:
    """Add `copies` (fingerprint → how many) to stored events; return the fingerprints counted.

    One statement whatever the counts; where rows are locked it locks them in fingerprint order
    first, so two counts of overlapping items never wait for each other in a cycle.
    """
    if not copies:
        return set()
    fingerprints = sorted(copies)
    table = connection.ops.quote_name(OperationEvent._meta.db_table)
    values = ", ".join(["(%s, CAST(%s AS integer))"] * len(fingerprints))
    placeholders = ", ".join(["%s"] * len(fingerprints))
    lock = for_update_clause()
    # Only the quoted table name is interpolated; values are parameters. The VALUES columns
    # keep their default names (column1, column2) on both backends.
    sql = (
        f"UPDATE {table} SET times_received = {table}.times_received + v.column2, "  # noqa: S608
        f"last_received_at = %s FROM (VALUES {values}) AS v "
        f"WHERE {table}.issuer_id = %s AND {table}.fingerprint = v.column1 "
        f"AND {table}.id IN (SELECT id FROM {table} WHERE issuer_id = %s "
        f"AND fingerprint IN ({placeholders}) ORDER BY fingerprint{lock}) "
        f"RETURNING {table}.fingerprint"
    )
    params: list[Any] = [now]
    for fingerprint in fingerprints:
        params += [fingerprint, copies[fingerprint]]
    params += [issuer.pk, issuer.pk, *fingerprints]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def lock_orders(*, issuer: Issuer, items: Iterable[PreparedItem], now) -> dict[OrderKey, CardOrder]:
    """Create missing orders and lock them, by (card, operation), before any event.

    When the card-level pass or the registration join may touch other orders of the batch's
    cards (an order new or without events, an UPDATE_ORDER item, a registered order waiting
    for its operation), every order of those cards is locked first, in the same order, so the
    pass never locks an order after the events. The usual batch (orders D1 has spoken about)
    costs one unlocked look and the upsert.
    """
    keys: dict[OrderKey, str] = {}
    words: list[FirstWord] = []
    for item in items:
        if item.is_foldable:
            keys.setdefault(item.order_key, item.check.operation)
            words.append(first_word(item))
    if not keys:
        return {}
    cards = sorted({card_id for card_id, _ in keys})
    present = {
        (card_id, operation_id): event_count
        for card_id, operation_id, event_count in CardOrder.objects.filter(
            issuer=issuer, card_id__in=cards
        ).values_list("card_id", "operation_id", "event_count")
    }
    # A registered order D1 has not spoken about, which this batch does not name: it may join.
    waiting = any(not count and key not in keys for key, count in present.items())
    if waiting or any(not present.get(key) for key in keys) or UPDATE_ORDER in keys.values():
        card_orders_lock(issuer=issuer, card_ids=cards)
        if waiting:
            # A registered order without operationId takes the operation D1 correlates with it.
            registered_orders_join(issuer=issuer, words=words)
    fields = ["issuer", "card_id", "operation_id", "operation", "created_at", "updated_at"]
    rows = rows_upsert(
        [
            CardOrder(
                issuer=issuer,
                card_id=card_id,
                operation_id=operation_id,
                operation=operation,
                created_at=now,
                updated_at=now,
            )
            for (card_id, operation_id), operation in sorted(keys.items())
        ],
        insert_fields=fields,
        conflict_fields=["issuer", "card_id", "operation_id"],
        update_fields=["operation"],
        returning=BOOKKEEPING_FIELDS,
    )
    # The stored bookkeeping (flags seen before, whether reconciliation is pending) is what the
    # re-derivation compares against, so it comes back from the database, not from defaults.
    return {(r["card_id"], r["operation_id"]): CardOrder(issuer=issuer, **r) for r in rows}


def first_word(item: PreparedItem) -> FirstWord:
    """What the registration join reads of an item: its ids, correlation id and start time."""
    return FirstWord(
        card_id=item.check.card_id,
        operation_id=item.check.operation_id,
        issuer_request_id=item.item.issuer_request_id,
        start_time=item.item.start_time,
    )
