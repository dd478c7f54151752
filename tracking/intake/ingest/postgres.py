"""Ingest's PostgreSQL engine: each step of `ingest_operations` in one statement, then the commit.

1. `begin`: the delivery row; then either the copies counted (every item stored already: nothing
   else is locked) or the batch's cards' orders locked and the orders upserted;
2. `events_lock`: the stored events of the batch and of its orders locked and read;
3. `finish`, after the fold: the new events inserted with their outcomes (and their copies in
   `times_received`), the stored ones' copies counted, the orders' state, the stored events'
   changed outcomes, the delivery's counts, and a look at whether the card-level pass has
   anything to do.

A POST made only of copies of stored items is one statement. A statement's sub-statements share
one snapshot, so what must see another transaction's committed work after waiting for its lock
starts a new statement: the events are read in the statement after the one that locks their
orders. The texts are in `postgres_sql`.
"""

from __future__ import annotations

import functools
import json
import operator
from typing import Any

from django.db import connection

from tracking.domain.ordering import EventFacts
from tracking.intake.ingest.engine import (
    Begun,
    Finished,
    Folded,
    OrderKey,
    StoredEvents,
    event_values,
)
from tracking.intake.ingest.portable import (
    BOOKKEEPING_FIELDS,
    copies_count,
    lock_orders,
)
from tracking.intake.ingest.postgres_sql import (
    DELIVERY_FIELDS,
    begin_sql,
    events_lock_sql,
    finish_sql,
    json_rows,
)
from tracking.intake.ingest.prepare import IngestBatch
from tracking.intake.ingest.rederive import WRITTEN_COLUMNS
from tracking.intake.locking import transaction_required
from tracking.models import CardOrder, Issuer, NotificationDelivery

# The bookkeeping columns in the model's order, as `Model.from_db` takes them.
_BOOKKEEPING_LOADED = [
    f.attname
    for f in CardOrder._meta.concrete_fields
    if f.attname in BOOKKEEPING_FIELDS or f.attname == "issuer_id"
]
_ORDER_ISSUER = CardOrder._meta.get_field("issuer")


class PostgresEngine:
    """`IngestEngine` in three statements of data-modifying CTEs."""

    def begin(
        self, *, issuer: Issuer, batch: IngestBatch, delivery: NotificationDelivery, now
    ) -> Begun:
        """The delivery row, then the copies counted or the orders locked and upserted.

        The copies are counted only when every item is stored already (the unlocked look of
        the portable engine, in the same statement); otherwise nothing is counted and every
        order of the batch's cards is locked, by (card, operation), then the batch's orders
        upserted, unless a registered order the batch does not name waits
        (`registered_orders_join` runs first, apart, in `lock_orders`).
        """
        transaction_required()
        items, keys = batch.items, batch.order_keys()
        named: dict[str, Any] = {
            "issuer": issuer.pk,
            "copies": json_rows([(f, items[f].copies) for f in sorted(items)]),
            "distinct": len(items),
            "now": now,
            "keys": json_rows([(*key, operation) for key, operation in sorted(keys.items())]),
        }
        if delivery.pk is None:
            for f in DELIVERY_FIELDS:
                value = f.pre_save(delivery, add=True)
                named[f"d_{f.column}"] = f.get_db_prep_save(value, connection)
        else:
            named.update(
                d_duplicate_count=delivery.duplicate_count,
                d_rejected_count=delivery.rejected_count,
                d_id=delivery.pk,
            )
        with connection.cursor() as cursor:
            cursor.execute(begin_sql(delivery.pk is None), named)
            delivery_id, counted, upserted = cursor.fetchone()
        if delivery.pk is None:
            delivery.pk = delivery_id
            delivery._state.adding, delivery._state.db = False, connection.alias
        counted = set(counted)
        unseen = [item for f, item in items.items() if f not in counted]
        if not unseen:
            return Begun(counted=counted, orders={})
        if not upserted and keys:
            # Not upserted: a registered order the batch does not name waits for D1's word (the
            # join runs first), or stored items vanished between the look and the count.
            return Begun(counted=counted, orders=lock_orders(issuer=issuer, items=unseen, now=now))
        return Begun(counted=counted, orders=_orders_loaded(issuer, upserted or []))

    def events_lock(
        self, *, issuer: Issuer, fingerprints: list[str], order_ids: list[int]
    ) -> StoredEvents:
        """Lock and read, in fingerprint order, the stored events of the batch and orders.

        A statement of its own, after the orders' locks: it sees every event a transaction
        that held those locks before committed.
        """
        named = {
            "issuer": issuer.pk,
            "fingerprints": json_rows(fingerprints),
            "orders": json_rows(order_ids),
        }
        batch = set(fingerprints)
        stored = StoredEvents()
        with connection.cursor() as cursor:
            cursor.execute(events_lock_sql(), named)
            rows = cursor.fetchall()
        for event_id, order_id, fingerprint, first, last, payload, outcome, is_applied in rows:
            if fingerprint in batch:
                stored.ids[fingerprint] = event_id
            if payload is not None:  # an event of one of the orders
                payload = json.loads(payload) if isinstance(payload, str) else payload
                fact = EventFacts(event_id, fingerprint, first, last, payload)
                stored.facts[order_id].append(fact)
                stored.outcomes[event_id] = (outcome, is_applied)
        return stored

    def finish(
        self, *, issuer: Issuer, folded: Folded, source: str, delivery, batch, now
    ) -> Finished:
        """Everything the fold decided, and the batch's events, in one statement.

        The stored events were locked in step 2. Returns the new events and which of the
        cards whose order got its first events the card-level pass (`cards_after_ingest`) has
        something to do for: a card with another order, an order flagged unknown at D1, or a
        change waiting for its order.
        """
        new_outcomes = folded.new_outcomes
        state_of = _state_getter()
        fresh = folded.fresh
        named: dict[str, Any] = {
            "events": json_rows(
                [event_values(fresh[f], folded.orders, new_outcomes) for f in sorted(fresh)]
            ),
            "copies": json_rows(
                sorted((folded.stored_ids[f], n) for f, n in folded.copies.items())
            ),
            "orders": json_rows([(o.pk, *state_of(o)) for o in folded.touched]),
            "outcomes": json_rows(folded.stored_outcomes),
            "issuer": issuer.pk,
            "delivery": delivery.pk,
            "source": source,
            "now": now,
            "total": batch.total,
            "rejected": batch.result.rejected_count,
            "cards": json_rows(folded.first_cards),
        }
        with connection.cursor() as cursor:
            cursor.execute(finish_sql(), named)
            inserted, busy = cursor.fetchone()
        return Finished(new={f: i for i, f in inserted or []}, busy_cards=set(busy))

    def copies_count(self, *, issuer: Issuer, copies: dict[str, int], now) -> set[str]:
        return copies_count(issuer=issuer, copies=copies, now=now)

    def counts_save(self, delivery: NotificationDelivery) -> None:
        """Nothing: `begin` and `finish` wrote the delivery's counts in their statements."""


def _orders_loaded(issuer: Issuer, rows: list[dict]) -> dict[OrderKey, CardOrder]:
    """The upserted orders, only their bookkeeping loaded; the fold sets what it writes."""
    orders = {}
    for r in rows:
        r["issuer_id"] = issuer.pk
        order = CardOrder.from_db(
            connection.alias, _BOOKKEEPING_LOADED, [r[n] for n in _BOOKKEEPING_LOADED]
        )
        _ORDER_ISSUER.set_cached_value(order, issuer)
        orders[(order.card_id, order.operation_id)] = order
    return orders


@functools.cache
def _state_getter():
    # No foreign key among the state fields: their names are their attribute names.
    return operator.attrgetter(*WRITTEN_COLUMNS)
