"""The webhook's path: a delivery, its distinct items and its copies stored; the fold comes later.

`ingest_store` writes what the answer promises (the delivery, each distinct item once as an
event, the refusals of invalid items) and nothing that can wait: no order's state is folded and
no order row is locked or rewritten. The orders it touches have unfolded events (`applied_at`
empty) until the projector (`tracking.intake.projector`) folds them in sets. A copy of a stored
item is one appended `EventCopy` row: no lock, no fold, counted into `times_received` by the
projector, so concurrent copies are counted exactly.

A batch the card-level rules must see at once goes through `ingest_operations` instead (the
fold on the request, as reconciliation does): an UPDATE_ORDER item, or a card with a
registered order that D1 has not spoken about yet (the registration join decides which order
the item belongs to, so it cannot wait).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import Q

from tracking.infrastructure.bulk import row_insert, row_insert_statement, row_inserted
from tracking.intake.card_operations import UPDATE_ORDER
from tracking.intake.ingest.engine import OrderKey
from tracking.intake.ingest.portable import events_insert
from tracking.intake.ingest.prepare import IngestBatch, IngestResult
from tracking.intake.ingest.steps import delivery_counts_set, ingest_operations
from tracking.intake.projector import FoldScope
from tracking.models import CardOrder, EventCopy, EventSource, Issuer, NotificationDelivery
from tracking.models import OperationEvent as Event


@dataclass
class Stored:
    """What `ingest_store` did: the counts, and whether the batch was folded already."""

    result: IngestResult
    folded: bool  # True when it went through `ingest_operations` (the fold on the request)
    to_fold: FoldScope  # what the projector has to do: orders with new events, copied events


def ingest_store(
    *,
    issuer: Issuer,
    batch: IngestBatch,
    delivery: NotificationDelivery,
    source: str = EventSource.WEBHOOK,
    now,
) -> Stored:
    """Store `batch` for `issuer` with `delivery`; the projector folds the orders later.

    Writes the delivery (with its counts), the new orders' rows, each new item as an event
    (invalid and untracked items with their outcome at once, the others unfolded) and one
    `EventCopy` per stored item repeated, all or nothing: in a transaction of its own (a
    savepoint inside the caller's), or on PostgreSQL, for a delivery made only of copies, in
    one statement. Raises only database errors.
    """
    items, result = batch.items, batch.result
    stored, present, unfolded = _looked_up(issuer, items, batch.order_keys())
    unseen = {f: item for f, item in items.items() if f not in stored}
    keys = _order_keys(unseen)
    cards = {card_id for card_id, _ in keys}
    present = [row for row in present if row[1] in cards]
    if unseen and _must_fold_now(unseen, present):
        with transaction.atomic():
            ingest_operations(
                issuer=issuer, operations=(), source=source, delivery=delivery, prepared=batch
            )
        return Stored(result=result, folded=True, to_fold=FoldScope())
    # Written whole with the first statement: every unseen item new, unless a concurrent
    # delivery stored one meanwhile (then the counts are written again below).
    result.new_count = len(unseen)
    result.duplicate_count = batch.total - result.new_count
    delivery_counts_set(delivery, result)
    if not unseen and connection.vendor == "postgresql":
        # A storm of D1's retries: the delivery and its copies in one statement, so a copy
        # costs two round trips (this and the look above), no BEGIN and no COMMIT of its own.
        copies = _copies_of(items, stored)
        _delivery_with_copies_insert(delivery, copies, now=now)
        return _stored(result, orders={}, new={}, items=items, copies=copies, unfolded=unfolded)
    with transaction.atomic():
        row_insert(delivery)
        orders = _orders_ensure(issuer, keys, present, now=now) if keys else {}
        new = events_insert(
            issuer=issuer,
            items=unseen,
            orders=orders,
            new_outcomes={},
            source=source,
            delivery=delivery,
            now=now,
        )
        raced = [f for f in unseen if f not in new]  # stored by a concurrent delivery meanwhile
        if raced:
            stored.update(_stored_events(issuer, raced))
            result.new_count = len(new)
            result.duplicate_count = batch.total - result.new_count
            delivery_counts_set(delivery, result)
            delivery.save(update_fields=["new_count", "duplicate_count"])
        copies = _copies_of(items, stored)
        if copies:
            _copies_append(copies, now=now)
    return _stored(result, orders=orders, new=new, items=items, copies=copies, unfolded=unfolded)


def _copies_of(items, stored: dict[str, int]) -> list[tuple[int, int]]:
    """(event id, copies) of each item of the delivery that is stored already."""
    return [(stored[f], item.copies) for f, item in sorted(items.items()) if f in stored]


def _stored(result, *, orders, new, items, copies, unfolded: set[int]) -> Stored:
    result.order_ids = {o.pk for o in orders.values()}
    foldable = any(items[f].is_foldable for f in new)
    return Stored(
        result=result,
        folded=False,
        to_fold=FoldScope(
            order_ids=frozenset(result.order_ids if foldable else ()) | unfolded,
            event_ids=frozenset(event_id for event_id, _ in copies),
        ),
    )


class OrderRef(NamedTuple):
    """An order as the event rows refer to it: its id."""

    pk: int


def _looked_up(issuer: Issuer, items, keys) -> tuple[dict[str, int], list[tuple], set[int]]:
    """One unlocked look: which items are stored (fingerprint → event id), every order of the
    batch's cards as (id, card, operation, registered, event count), and the orders of stored
    items that still wait to be folded (a delivery that died between its commit and its fold)."""
    quote = connection.ops.quote_name
    event, order = (quote(m._meta.db_table) for m in (Event, CardOrder))
    cards = sorted({card_id for card_id, _ in keys})
    sql = f"SELECT 0, id, fingerprint, NULL, applied_at IS NULL, order_id FROM {event} "  # noqa: S608
    sql += f"WHERE issuer_id = %s AND fingerprint {_among(items)}"
    params = [issuer.pk, *_listed(items)]
    if cards:
        sql += (
            " UNION ALL SELECT 1, id, card_id, operation_id, registered_at IS NOT NULL, "  # noqa: S608
            f"event_count FROM {order} WHERE issuer_id = %s AND card_id {_among(cards)}"
        )
        params += [issuer.pk, *_listed(cards)]
    stored: dict[str, int] = {}
    present: list[tuple] = []
    unfolded: set[int] = set()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for kind, pk, first, second, flag, number in cursor.fetchall():
            if kind == 0:
                stored[first] = pk
                if flag and number is not None:  # unfolded, of an order
                    unfolded.add(number)
            else:
                present.append((pk, first, second, bool(flag), number))
    return stored, present, unfolded


def _delivery_with_copies_insert(
    delivery: NotificationDelivery, copies: list[tuple[int, int]], *, now
) -> None:
    """INSERT the delivery and one `EventCopy` per (event id, copies), in one statement."""
    insert, values = row_insert_statement(delivery)
    copies_insert, params = _copies_insert(copies, now=now)
    with connection.cursor() as cursor:
        # Only the two statements built from the models' metadata are interpolated.
        sql = f"WITH d AS ({insert}), c AS ({copies_insert}) SELECT id FROM d"  # noqa: S608
        cursor.execute(sql, [*values, *params])
        row_inserted(delivery, cursor.fetchone()[0])


def _copies_append(copies: list[tuple[int, int]], *, now) -> None:
    """Append one `EventCopy` row per (event id, copies): no lock, no UPDATE."""
    sql, params = _copies_insert(copies, now=now)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _copies_insert(copies: list[tuple[int, int]], *, now) -> tuple[str, list]:
    """The INSERT of one `EventCopy` row per (event id, copies), and its parameters."""
    table = connection.ops.quote_name(EventCopy._meta.db_table)
    stamp = EventCopy._meta.get_field("received_at").get_db_prep_save(now, connection)
    if connection.vendor == "postgresql":  # one text for any count (see `_among`)
        rows = "SELECT (r->>0)::bigint, (r->>1)::integer, %s FROM jsonb_array_elements(%s::jsonb) r"
        params: list = [stamp, json.dumps(copies)]
    else:
        rows = "VALUES " + ", ".join(["(%s, %s, %s)"] * len(copies))
        params = [value for event_id, count in copies for value in (event_id, count, stamp)]
    return f"INSERT INTO {table} (event_id, copies, received_at) {rows}", params


def _among(values) -> str:
    """`IN (...)` for `values`; on PostgreSQL one statement text for any count.

    The driver rewrites the placeholders of a long statement text on every call, and the
    server plans each new text afresh: the values travel as one JSON list instead (encoded in C;
    with client-side binding an array parameter is dumped element by element in Python).
    """
    if connection.vendor == "postgresql":
        return "= ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))"
    return f"IN ({', '.join(['%s'] * len(values))})"


def _listed(values) -> list:
    """The parameters of `_among(values)`."""
    return [json.dumps(list(values))] if connection.vendor == "postgresql" else list(values)


def _stored_events(issuer: Issuer, fingerprints: list[str]) -> dict[str, int]:
    """Which of `fingerprints` are stored as events, fingerprint → id (an unlocked look)."""
    if not fingerprints:
        return {}
    return dict(
        Event.objects.filter(issuer=issuer, fingerprint__in=fingerprints).values_list(
            "fingerprint", "id"
        )
    )


def _order_keys(unseen) -> dict[OrderKey, str]:
    """The (card, operation) of each foldable unseen item, with its operation."""
    keys: dict[OrderKey, str] = {}
    for item in unseen.values():
        if item.is_foldable:
            keys.setdefault(item.order_key, item.check.operation)
    return keys


def _must_fold_now(unseen, present: list[tuple]) -> bool:
    """Whether the card-level rules must see the batch in its transaction (see the module).

    An UPDATE_ORDER item, or a registered order of the batch's cards that D1 has not spoken
    about: one the batch names, or one that may join an operation of the batch.
    """
    if any(item.check.operation == UPDATE_ORDER for item in unseen.values()):
        return True
    return any(registered and not count for _, _, _, registered, count in present)


def _orders_ensure(issuer: Issuer, keys, present: list[tuple], *, now) -> dict[OrderKey, OrderRef]:
    """The orders of `keys`, the missing ones inserted; nothing locked or rewritten.

    A key another delivery inserts meanwhile is waited for by the insert (its unique index)
    and read in a statement of its own, which sees it committed.
    """
    orders = {
        (card_id, operation_id): OrderRef(pk)
        for pk, card_id, operation_id, _, _ in present
        if (card_id, operation_id) in keys
    }
    missing = sorted(k for k in keys if k not in orders)
    if missing:
        quote = connection.ops.quote_name
        stamp = CardOrder._meta.get_field("created_at").get_db_prep_save(now, connection)
        columns = "issuer_id, card_id, operation_id, operation, created_at, updated_at"
        if connection.vendor == "postgresql":  # one text for any count (see `_among`)
            rows = "SELECT %s, r->>0, r->>1, r->>2, %s, %s FROM jsonb_array_elements(%s::jsonb) r"
            listed = json.dumps([[*key, keys[key]] for key in missing])
            params: list = [issuer.pk, stamp, stamp, listed]
        else:
            rows = "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(missing))
            params = []
            for card_id, operation_id in missing:
                params += [issuer.pk, card_id, operation_id, keys[(card_id, operation_id)]]
                params += [stamp, stamp]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {quote(CardOrder._meta.db_table)} ({columns}) {rows} "
                "ON CONFLICT (issuer_id, card_id, operation_id) DO NOTHING "
                "RETURNING id, card_id, operation_id",
                params,
            )
            for pk, card_id, operation_id in cursor.fetchall():
                orders[(card_id, operation_id)] = OrderRef(pk)
        raced = [k for k in missing if k not in orders]
        if raced:
            orders.update(_orders_read(issuer, raced))
    return orders


def _orders_read(issuer: Issuer, keys) -> dict[OrderKey, OrderRef]:
    match = Q()
    for card_id, operation_id in keys:
        match |= Q(card_id=card_id, operation_id=operation_id)
    rows = CardOrder.objects.filter(match, issuer=issuer).values_list(
        "id", "card_id", "operation_id"
    )
    return {(c, o): OrderRef(pk) for pk, c, o in rows}
