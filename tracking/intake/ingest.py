"""Ingest: store D1 operation items as events and re-derive the state of the orders they touch.

The one path for webhooks, on-demand answers (reconciliation) and replays. It is set-based, so
a batch of 50 items costs about as many queries as one item:

1. upsert the orders the items belong to and lock them;
2. lock the events already stored (the batch's and the locked orders'), insert the distinct new
   items as events (ON CONFLICT DO NOTHING on issuer + fingerprint), then add every repeated
   copy to `times_received`, copies inside the same POST included;
3. re-derive each touched order from all its events (`tracking.domain.fold`) and save the
state, the
   reconcile flag and what each event did.

On PostgreSQL the same steps take three statements (data-modifying CTEs, `_ingest_postgresql`):
the delivery row with the copy count or the orders' locks and upsert; the stored events' locks
and read; after the fold, the new events (written once, with their outcomes), the copies, the
orders' state and the delivery's counts. A POST made only of copies of stored items is one
statement. Elsewhere (SQLite) each step is a statement of its own (`_ingest_portable`); both
fold in Python with `tracking.domain.fold`, only the orders that got a new event.

Lock order. Every path that writes card orders and events takes its row locks in one global
order, so that two transactions never wait for each other in a cycle (PostgreSQL would abort
one of them, and the webhook would answer 503):

1. card orders, by (issuer, card_id, operation_id);
2. then events, by (issuer, fingerprint), each set in one statement.

A batch made only of copies of stored items locks its events and nothing after them, so a retry
storm never queues on an order's row lock. Inside one PostgreSQL statement the order holds too:
a sub-statement that must come after a lock reads the locking CTE through an uncorrelated
subquery, which runs to its end first; and the events are read in the statement after the one
that locks their orders, so that they include what the previous holder of those locks wrote.
Ingest, reconciliation (`order_reconcile` locks its card's orders first), the registration
join, the card-level pass (`cards_after_ingest`), `refresh_orders`, `rederive` and the
retention compaction all follow it.

The caller owns the transaction: nothing is acknowledged before it commits.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import JSONNull, Q
from django.utils import timezone

from tracking.domain.flags import ReconcileReason, needs_reconcile_after, reconcile_reason_for
from tracking.domain.fold import RULES_VERSION, Outcome, derive_order_state
from tracking.domain.masking import free_text_mask, mask_item_text_fields
from tracking.domain.order_state import DERIVED_COLUMNS, FOLDED_COLUMNS, OrderState
from tracking.domain.ordering import EventFacts
from tracking.domain.times import parse_time
from tracking.domain.validation import ItemCheck, check_item, item_storable
from tracking.infrastructure.bulk import rows_insert_new, rows_update, rows_upsert
from tracking.intake.card_operations import UPDATE_ORDER, cards_after_ingest
from tracking.models import (
    CardOrder,
    EventSource,
    Issuer,
    NotificationDelivery,
    OperationEvent,
    OrderChange,
)
from tracking.outbound.outbox import events_record, facts_before
from tracking.services.registration import (
    FirstWord,
    registered_orders_join,
    registration_fill,
)


def item_fingerprint(item: Any) -> str:
    """SHA-256 of the item's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class IngestResult:
    """What one ingest did: counts per kind and the orders it touched."""

    item_count: int = 0
    new_count: int = 0
    duplicate_count: int = 0
    rejected_count: int = 0
    order_ids: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


@dataclass
class _Item:
    raw: Any
    check: ItemCheck
    fingerprint: str
    copies: int = 1


@dataclass
class IngestBatch:
    """A body's items ready to store: masked, fingerprinted, checked, copies counted.

    `result` already holds what needs no database: the item count and the rejected items.
    """

    items: dict[str, _Item]
    result: IngestResult

    @property
    def total(self) -> int:
        return sum(i.copies for i in self.items.values())


def ingest_prepare(operations: Sequence[Any]) -> IngestBatch:
    """Mask, fingerprint and check `operations`; copies inside the body are counted, not kept."""
    result = IngestResult(item_count=len(operations))
    items: dict[str, _Item] = {}
    for sent in operations:
        storable = item_storable(sent)  # what no column can hold is escaped; the item invalid
        # Identifiers kept exactly as sent, card numbers in the text masked (data_care).
        raw = mask_item_text_fields(storable.value)
        fingerprint = item_fingerprint(raw)
        if fingerprint in items:
            items[fingerprint].copies += 1
            continue
        check = check_item(raw, unstorable=free_text_mask(storable.problem))
        items[fingerprint] = _Item(raw=raw, check=check, fingerprint=fingerprint)
    for item in items.values():
        if not item.check.is_valid:
            result.rejected_count += item.copies
            result.errors.append(item.check.error)
    return IngestBatch(items=items, result=result)


def ingest_operations(
    *,
    issuer: Issuer,
    operations: Sequence[Any],
    source: str = EventSource.WEBHOOK,
    delivery: NotificationDelivery,
    prepared: IngestBatch | None = None,
) -> IngestResult:
    """Store `operations` for `issuer` and re-derive every order they touch.

    Writes events (new or `times_received` += copies), upserts card orders and saves their
    derived state; invalid items are stored with their reason and outcome `invalid` (an item
    holding what no column can hold, escaped: `tracking.domain.validation.item_storable`); card
    numbers in an item's text are masked before it is stored, its identifiers kept exactly as
    sent (`tracking.domain.masking`). `delivery` is
    inserted with the first statement when it is not saved yet; its `new_count`,
    `duplicate_count` and `rejected_count` are written. `prepared` is `ingest_prepare`'s
    answer for these operations, when the caller needed it first. Must run inside a
    transaction. Raises only database errors (the caller answers 5xx so D1 retries).
    """
    batch = prepared if prepared is not None else ingest_prepare(operations)
    now = timezone.now()
    if connection.vendor == "postgresql":
        _ingest_postgresql(issuer=issuer, batch=batch, source=source, delivery=delivery, now=now)
    else:
        _ingest_portable(issuer=issuer, batch=batch, source=source, delivery=delivery, now=now)
    result = batch.result
    delivery.new_count = result.new_count
    delivery.duplicate_count = result.duplicate_count
    delivery.rejected_count = result.rejected_count
    return result


def _ingest_portable(*, issuer, batch: IngestBatch, source, delivery, now) -> None:
    """Any backend (SQLite here): one statement per step, the steps in the module's lock order."""
    items, result = batch.items, batch.result
    if delivery.pk is None:
        delivery.save()
    # A batch made only of copies of stored items counts them and locks nothing else: a retry
    # storm of one notification then never queues on the order's row lock. The look is
    # unlocked; the count locks the events, in fingerprint order.
    counted: set[str] = set()
    if items and _stored_fingerprints(issuer=issuer, fingerprints=list(items)) == set(items):
        counted = _count_copies(
            issuer=issuer, copies={f: i.copies for f, i in items.items()}, now=now
        )
    unseen = {f: item for f, item in items.items() if f not in counted}
    if not unseen:
        result.duplicate_count = batch.total
        _delivery_counts_save(delivery, result)
        return
    # Anything else: the orders first, then the events (the module's lock order).
    orders = _lock_orders(issuer=issuer, items=unseen.values(), now=now)
    stored = _lock_events(
        issuer=issuer,
        fingerprints=list(unseen),
        order_ids=[o.pk for o in orders.values() if o.event_count],
    )
    new_events = _store_events(
        issuer=issuer,
        items={f: i for f, i in unseen.items() if f not in stored.fingerprints},
        orders=orders,
        source=source,
        delivery=delivery,
        now=now,
    )
    new_fingerprints = set(new_events)
    repeats = {f: item.copies - (1 if f in new_fingerprints else 0) for f, item in unseen.items()}
    _count_copies(issuer=issuer, copies={f: n for f, n in repeats.items() if n}, now=now)
    result.new_count = len(new_fingerprints)
    result.duplicate_count = batch.total - result.new_count

    touched, known = _fold_inputs(unseen=unseen, new_events=new_events, orders=orders, now=now)
    first_events = {pk for pk, order in touched.items() if order.event_count == 0}
    if touched:
        known = {pk: [*stored.facts.get(pk, []), *facts] for pk, facts in known.items()}
        refresh_orders(
            list(touched.values()), now=now, known_events=known, outcomes=stored.outcomes
        )
    _delivery_counts_save(delivery, result)
    _cards_update(
        issuer=issuer,
        items=unseen,
        new_events=new_events,
        first_events=first_events,
        orders=orders,
        now=now,
    )
    result.order_ids = {o.pk for o in orders.values()}


def _delivery_counts_save(delivery: NotificationDelivery, result: IngestResult) -> None:
    delivery.new_count = result.new_count
    delivery.duplicate_count = result.duplicate_count
    delivery.rejected_count = result.rejected_count
    delivery.save(update_fields=["new_count", "duplicate_count", "rejected_count"])


def _fold_inputs(*, unseen, new_events, orders, now):
    """The orders a batch changed and the facts of their new events, by order id.

    Only orders that got a new event can change; for an order that had no events before, the
    new events are all it has, so they need not be read back.
    """
    touched: dict[int, CardOrder] = {}
    fresh: dict[int, list[EventFacts]] = defaultdict(list)
    for item in unseen.values():
        if item.fingerprint not in new_events or not (
            item.check.is_valid and item.check.is_tracked
        ):
            continue
        order = orders[(item.check.card_id, item.check.operation_id)]
        touched[order.pk] = order
        fact = EventFacts(new_events[item.fingerprint], item.fingerprint, now, now, item.raw)
        fresh[order.pk].append(fact)
    return touched, fresh


def _cards_update(
    *, issuer: Issuer, items, new_events, first_events, orders, now, quiet_cards=frozenset()
) -> None:
    """The issuer's side of a batch: pull & change results, re-ordered cards superseding.

    Only a card with an order that just got its first events (a new operation, a registered
    order joined) or with a new UPDATE_ORDER can change here; the usual batch costs nothing.
    `quiet_cards` are cards the caller saw need nothing (`_CARD_PASS_LOOK`).
    """
    card_ids = {
        o.card_id for o in orders.values() if o.pk in first_events and o.card_id not in quiet_cards
    }
    updates = []
    for item in items.values():
        is_update = item.check.operation == UPDATE_ORDER and item.check.card_id
        if is_update and item.fingerprint in new_events:
            card_ids.add(item.check.card_id)
            updates.append((new_events[item.fingerprint], item.check.card_id, item.raw))
    if card_ids:
        cards_after_ingest(issuer=issuer, card_ids=card_ids, update_items=updates, now=now)


def _lock_orders(
    *, issuer: Issuer, items: Iterable[_Item], now
) -> dict[tuple[str, str], CardOrder]:
    """Create missing orders and lock them, by (card, operation), before any event.

    When the card-level pass or the registration join may touch other orders of the batch's
    cards (an order new or without events, an UPDATE_ORDER item, a registered order waiting
    for its operation), every order of those cards is locked first, in the same order, so the
    pass never locks an order after the events. The usual batch (orders D1 has spoken about)
    costs one unlocked look and the upsert.
    """
    keys: dict[tuple[str, str], str] = {}
    words: list[FirstWord] = []
    for item in items:
        if item.check.is_valid and item.check.is_tracked:
            keys.setdefault((item.check.card_id, item.check.operation_id), item.check.operation)
            words.append(_first_word(item))
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
        insert_fields=[
            "issuer",
            "card_id",
            "operation_id",
            "operation",
            "created_at",
            "updated_at",
        ],
        conflict_fields=["issuer", "card_id", "operation_id"],
        update_fields=["operation"],
        returning=_BOOKKEEPING_FIELDS,
    )
    # The stored bookkeeping (flags seen before, whether reconciliation is pending) is what the
    # re-derivation compares against, so it comes back from the database, not from defaults.
    return {(r["card_id"], r["operation_id"]): CardOrder(issuer=issuer, **r) for r in rows}


def _first_word(item: _Item) -> FirstWord:
    """What the registration join reads of an item: its ids, correlation id and start time."""
    raw = item.raw
    details = raw.get("details") if isinstance(raw.get("details"), dict) else {}
    # D1 puts issuerRequestId at the top level or inside details (SPEC §2.2): the top first.
    request_id = next(
        (v for v in (raw.get("issuerRequestId"), details.get("issuerRequestId")) if v), ""
    )
    return FirstWord(
        card_id=item.check.card_id,
        operation_id=item.check.operation_id,
        issuer_request_id=request_id if isinstance(request_id, str) else "",
        start_time=parse_time(raw.get("startTime")),
    )


def card_orders_lock(*, issuer: Issuer, card_ids: Iterable[str]) -> list[int]:
    """Lock every order of `card_ids` at `issuer`, by (card, operation); return their ids."""
    return list(
        CardOrder.objects.filter(issuer=issuer, card_id__in=sorted(set(card_ids)))
        .order_by("card_id", "operation_id")
        .select_for_update()
        .values_list("id", flat=True)
    )


_BOOKKEEPING_FIELDS = [
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


def _store_events(*, issuer, items, orders, source, delivery, now) -> dict[str, int]:
    """Insert the distinct items as events; return the new ones as fingerprint → event id."""
    events = []
    for item in sorted(items.values(), key=lambda i: i.fingerprint):
        check = item.check
        order = orders.get((check.card_id, check.operation_id)) if check.is_tracked else None
        details = item.raw.get("details") if isinstance(item.raw, dict) else None
        details = details if isinstance(details, dict) else {}
        shipment = details.get("shipment") if isinstance(details.get("shipment"), dict) else {}
        if not check.is_valid:
            outcome, applied_at = Outcome.INVALID, now
        elif not check.is_tracked:
            outcome, applied_at = Outcome.NOT_TRACKED, now
        else:
            outcome, applied_at = "", None
        events.append(
            OperationEvent(
                issuer=issuer,
                order=order if check.is_valid else None,
                delivery=delivery,
                fingerprint=item.fingerprint,
                card_id=check.card_id or _short(item.raw, "cardId", 48),
                operation_id=check.operation_id or _short(item.raw, "operationId", 64),
                operation=check.operation[:64],
                operation_status=_short(item.raw, "status", 32),
                production_status=_short(details, "status", 64),
                shipment_status=_short(shipment, "status", 64),
                # JSON null is a value D1 sent, not a missing column (SQL NULL).
                payload=JSONNull() if item.raw is None else item.raw,
                source=source,
                first_received_at=now,
                last_received_at=now,
                times_received=1,
                outcome=outcome,
                validation_error=check.error,
                applied_at=applied_at,
            )
        )
    inserted = rows_insert_new(
        events, conflict_fields=["issuer", "fingerprint"], returning=["fingerprint", "id"]
    )
    return dict(inserted)


def _short(source: Any, name: str, max_len: int) -> str:
    value = source.get(name) if isinstance(source, dict) else None
    return value[:max_len] if isinstance(value, str) else ""


def _stored_fingerprints(*, issuer: Issuer, fingerprints: list[str]) -> set[str]:
    """Which of `fingerprints` are stored as events already (an unlocked look)."""
    return set(
        OperationEvent.objects.filter(issuer=issuer, fingerprint__in=fingerprints).values_list(
            "fingerprint", flat=True
        )
    )


@dataclass
class _StoredEvents:
    """Events read under lock: the batch's stored fingerprints and each order's events."""

    fingerprints: set[str] = field(default_factory=set)
    facts: dict[int, list[EventFacts]] = field(default_factory=lambda: defaultdict(list))
    outcomes: dict[int, tuple[str, bool]] = field(default_factory=dict)


def _lock_events(*, issuer: Issuer, fingerprints: list[str], order_ids: list[int]) -> _StoredEvents:
    """Lock, in fingerprint order, the stored events of the batch and of the locked orders.

    One statement, so that the later writes (copies counted, outcomes saved) lock nothing
    new. Events of a locked order cannot appear meanwhile: only a holder of its lock adds them.
    """
    stored = _StoredEvents()
    for event_id, order_id, fingerprint, first, last, payload, outcome, applied_at in events_locked(
        OperationEvent.objects.filter(
            Q(issuer=issuer, fingerprint__in=fingerprints) | Q(order_id__in=order_ids)
        )
    ):
        if fingerprint in fingerprints:
            stored.fingerprints.add(fingerprint)
        if order_id in order_ids:
            stored.facts[order_id].append(EventFacts(event_id, fingerprint, first, last, payload))
            stored.outcomes[event_id] = (outcome, applied_at is not None)
    return stored


def events_locked(events, *, lock: bool = True):
    """The event rows re-derivation reads, locked in fingerprint order where locks exist."""
    events = events.order_by("fingerprint")
    if lock and connection.features.has_select_for_update:
        events = events.select_for_update()
    return events.values_list(
        "id",
        "order_id",
        "fingerprint",
        "first_received_at",
        "last_received_at",
        "payload",
        "outcome",
        "applied_at",
    )


def _count_copies(*, issuer: Issuer, copies: dict[str, int], now) -> set[str]:
    """Add `copies` (fingerprint → how many) to stored events; return the fingerprints counted.

    One statement whatever the counts; on PostgreSQL it locks the rows in fingerprint order
    first, so two counts of overlapping items never wait for each other in a cycle.
    """
    if not copies:
        return set()
    fingerprints = sorted(copies)
    table = connection.ops.quote_name(OperationEvent._meta.db_table)
    values = ", ".join(["(%s, CAST(%s AS integer))"] * len(fingerprints))
    placeholders = ", ".join(["%s"] * len(fingerprints))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
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


# ---------------------------------------------------------------------------- PostgreSQL

# On PostgreSQL the steps above are merged into data-modifying CTEs, each statement keeping the
# module's lock order inside it: a sub-statement that must come after a lock reads the locking
# CTE through an uncorrelated subquery (an InitPlan, run to its end before the first row).
# JSON documents carry the rows (one parameter each, encoded in C), so each statement's text is
# the same for every batch.
# A statement's sub-statements share one snapshot, so what must see another transaction's
# committed work after waiting for its lock starts a new statement: the events are read in the
# statement after the one that locks their orders.


def _ingest_postgresql(*, issuer, batch: IngestBatch, source, delivery, now) -> None:
    """The portable steps in three statements (one for a batch of copies), then the commit.

    1. the delivery row; then either the copies counted (every item stored already: nothing
       else is locked) or the batch's cards' orders locked and the orders upserted;
    2. the stored events of the batch and of its orders locked and read;
    3. after the fold: the new events inserted with their outcomes (and their copies in
       `times_received`), the stored ones' copies counted, the orders' state, the stored
       events' changed outcomes, the delivery's counts, and a look at whether the card-level
       pass has anything to do.
    """
    items, result = batch.items, batch.result
    keys: dict[tuple[str, str], str] = {}
    for item in items.values():
        if item.check.is_valid and item.check.is_tracked:
            keys.setdefault((item.check.card_id, item.check.operation_id), item.check.operation)
    # Inserted as if every item were a copy: true when step 1 counts them all; else step 3
    # writes the counts found.
    result.duplicate_count = batch.total
    delivery.duplicate_count, delivery.rejected_count = batch.total, result.rejected_count
    begun = _pg_begin(issuer=issuer, items=items, keys=keys, delivery=delivery, now=now)
    if delivery.pk is None:
        delivery.pk = begun.delivery_id
        delivery._state.adding, delivery._state.db = False, connection.alias
    unseen = {f: item for f, item in items.items() if f not in begun.counted}
    if not unseen:
        return
    if begun.orders is None:
        # Not upserted in step 1: a registered order the batch does not name waits for D1's
        # word (the join runs first), or stored items vanished between the look and the count.
        orders = _lock_orders(issuer=issuer, items=unseen.values(), now=now)
    else:
        orders = begun.orders
    stored = _pg_events_lock(
        issuer=issuer,
        fingerprints=sorted(unseen),
        order_ids=[o.pk for o in orders.values() if o.event_count],
    )
    fresh = {f: item for f, item in unseen.items() if f not in stored.ids}
    # The fold runs before the new events are inserted, so that each is written once, with
    # its outcome: a new event is known to it by its fingerprint, a stored one by its id.
    touched, known = _fold_inputs(
        unseen=fresh, new_events={f: f for f in fresh}, orders=orders, now=now
    )
    first_events = {pk for pk, order in touched.items() if order.event_count == 0}
    known = {pk: [*stored.facts.get(pk, []), *facts] for pk, facts in known.items()}
    before = facts_before(touched.values())
    changed = _orders_fold(
        list(touched.values()), now=now, known_events=known, outcomes=stored.outcomes
    )
    first_cards = sorted({o.card_id for o in touched.values() if o.pk in first_events})
    finished = _pg_finish(
        issuer=issuer,
        items=fresh,
        copies={stored.ids[f]: i.copies for f, i in unseen.items() if f in stored.ids},
        orders=orders,
        touched=list(touched.values()),
        outcomes=changed,
        source=source,
        delivery=delivery,
        total=batch.total,
        result=result,
        cards=first_cards,
        now=now,
    )
    events_record(list(touched.values()), before=before, now=now)
    new_events = finished.new
    # A copy inserted by a transaction this one could not see yet (an item without an order
    # to lock: invalid, or not tracked): counted afresh, in a statement that sees it.
    _count_copies(
        issuer=issuer,
        copies={f: i.copies for f, i in fresh.items() if f not in new_events},
        now=now,
    )
    result.new_count = len(new_events)
    result.duplicate_count = batch.total - result.new_count
    _cards_update(
        issuer=issuer,
        items=unseen,
        new_events=new_events,
        first_events=first_events,
        orders=orders,
        now=now,
        quiet_cards=set(first_cards) - finished.busy_cards,
    )
    result.order_ids = {o.pk for o in orders.values()}


@dataclass
class _Begun:
    delivery_id: int
    counted: set[str]
    orders: dict[tuple[str, str], CardOrder] | None


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(model, names: Iterable[str]) -> str:
    quote = connection.ops.quote_name
    return ", ".join(quote(model._meta.get_field(n).column) for n in names)


# The bookkeeping columns in the model's order, as `Model.from_db` takes them.
_BOOKKEEPING_LOADED = [
    f.attname
    for f in CardOrder._meta.concrete_fields
    if f.attname in _BOOKKEEPING_FIELDS or f.attname == "issuer_id"
]
_ORDER_ISSUER = CardOrder._meta.get_field("issuer")
_DELIVERY_FIELDS = [f for f in NotificationDelivery._meta.concrete_fields if not f.primary_key]


@functools.cache
def _begin_sql(insert_delivery: bool) -> str:
    delivery, order, event = (_table(m) for m in (NotificationDelivery, CardOrder, OperationEvent))
    if insert_delivery:
        columns = ", ".join(connection.ops.quote_name(f.column) for f in _DELIVERY_FIELDS)
        placeholders = ", ".join(f"%(d_{f.column})s" for f in _DELIVERY_FIELDS)
        d = f"INSERT INTO {delivery} ({columns}) VALUES ({placeholders}) RETURNING id"  # noqa: S608
    else:
        d = (
            f"UPDATE {delivery} SET new_count = 0, "  # noqa: S608
            "duplicate_count = %(d_duplicate_count)s, "
            "rejected_count = %(d_rejected_count)s WHERE id = %(d_id)s RETURNING id"
        )
    returned = _columns(CardOrder, _BOOKKEEPING_FIELDS)
    # Only quoted names from the models' metadata are interpolated; values are parameters.
    return f"""
WITH c AS MATERIALIZED (
  SELECT r->>0 AS fingerprint, (r->>1)::integer AS copies
  FROM jsonb_array_elements(%(copies)s::jsonb) AS r
),
k AS MATERIALIZED (
  SELECT r->>0 AS card_id, r->>1 AS operation_id, r->>2 AS operation, n
  FROM jsonb_array_elements(%(keys)s::jsonb) WITH ORDINALITY AS x(r, n)
),
d AS ({d}),
seen AS MATERIALIZED (
  SELECT count(*) AS n FROM {event}
  WHERE issuer_id = %(issuer)s AND fingerprint = ANY(ARRAY(SELECT fingerprint FROM c))
),
counted AS (
  UPDATE {event} SET times_received = {event}.times_received + c.copies,
    last_received_at = %(now)s
  FROM c
  WHERE {event}.issuer_id = %(issuer)s AND {event}.fingerprint = c.fingerprint
    AND {event}.id IN (
      SELECT id FROM {event} WHERE issuer_id = %(issuer)s
        AND fingerprint = ANY(ARRAY(SELECT fingerprint FROM c))
        AND (SELECT n FROM seen) = %(distinct)s
      ORDER BY fingerprint FOR UPDATE)
  RETURNING {event}.fingerprint
),
locked AS MATERIALIZED (
  SELECT card_id, operation_id, event_count FROM {order}
  WHERE issuer_id = %(issuer)s AND card_id = ANY(ARRAY(SELECT card_id FROM k))
    AND (SELECT n FROM seen) < %(distinct)s
  ORDER BY card_id, operation_id FOR UPDATE
),
up AS (
  INSERT INTO {order} (issuer_id, card_id, operation_id, operation, created_at, updated_at)
  SELECT %(issuer)s, k.card_id, k.operation_id, k.operation, %(now)s, %(now)s
  FROM k
  WHERE (SELECT n FROM seen) < %(distinct)s
    AND NOT EXISTS (
      SELECT 1 FROM locked l WHERE l.event_count = 0 AND NOT EXISTS (
        SELECT 1 FROM k WHERE k.card_id = l.card_id AND k.operation_id = l.operation_id))
  ORDER BY k.n
  ON CONFLICT (issuer_id, card_id, operation_id) DO UPDATE SET operation = EXCLUDED.operation
  RETURNING {returned}
)
SELECT (SELECT id FROM d), ARRAY(SELECT fingerprint FROM counted),
  (SELECT json_agg(up) FROM up)
"""  # noqa: S608


def _pg_begin(*, issuer, items, keys, delivery, now) -> _Begun:
    """Step 1: the delivery row, then the copies counted or the orders locked and upserted.

    The copies are counted only when every item is stored already (the unlocked look of the
    portable path, in the same statement); otherwise nothing is counted and every order of the
    batch's cards is locked, by (card, operation), then the batch's orders upserted, unless a
    registered order the batch does not name waits (`registered_orders_join` runs first, apart).
    """
    named = {
        "issuer": issuer.pk,
        "copies": _json_rows([(f, items[f].copies) for f in sorted(items)]),
        "distinct": len(items),
        "now": now,
        "keys": _json_rows([(*key, operation) for key, operation in sorted(keys.items())]),
    }
    if delivery.pk is None:
        for f in _DELIVERY_FIELDS:
            named[f"d_{f.column}"] = f.get_db_prep_save(f.pre_save(delivery, add=True), connection)
    else:
        named.update(
            d_duplicate_count=delivery.duplicate_count,
            d_rejected_count=delivery.rejected_count,
            d_id=delivery.pk,
        )
    with connection.cursor() as cursor:
        cursor.execute(_begin_sql(delivery.pk is None), named)
        delivery_id, counted, upserted = cursor.fetchone()
    orders = None
    if upserted or not keys:
        orders = {}
        for r in upserted or []:
            # Only the bookkeeping is loaded; the fold sets every column it writes.
            r["issuer_id"] = issuer.pk
            order = CardOrder.from_db(
                connection.alias, _BOOKKEEPING_LOADED, [r[n] for n in _BOOKKEEPING_LOADED]
            )
            _ORDER_ISSUER.set_cached_value(order, issuer)
            orders[(order.card_id, order.operation_id)] = order
    return _Begun(delivery_id=delivery_id, counted=set(counted), orders=orders)


@dataclass
class _PgStored:
    """Step 2's answer: the batch's stored events (fingerprint → id), the orders' events."""

    ids: dict[str, int] = field(default_factory=dict)
    facts: dict[int, list[EventFacts]] = field(default_factory=lambda: defaultdict(list))
    outcomes: dict[int, tuple[str, bool]] = field(default_factory=dict)


@functools.cache
def _events_lock_sql() -> str:
    event = _table(OperationEvent)
    # Only quoted names from the model's metadata are interpolated; values are parameters.
    return f"""
WITH f AS MATERIALIZED (
  SELECT fingerprint FROM jsonb_array_elements_text(%(fingerprints)s::jsonb) AS fingerprint
),
o AS MATERIALIZED (
  SELECT id::bigint FROM jsonb_array_elements_text(%(orders)s::jsonb) AS id
)
SELECT id, order_id, fingerprint, first_received_at, last_received_at,
  CASE WHEN order_id = ANY(ARRAY(SELECT id FROM o)) THEN payload END, outcome,
  applied_at IS NOT NULL
FROM {event}
WHERE (issuer_id = %(issuer)s AND fingerprint = ANY(ARRAY(SELECT fingerprint FROM f)))
  OR order_id = ANY(ARRAY(SELECT id FROM o))
ORDER BY fingerprint FOR UPDATE
"""  # noqa: S608


def _pg_events_lock(*, issuer, fingerprints: list[str], order_ids: list[int]) -> _PgStored:
    """Step 2: lock and read, in fingerprint order, the stored events of the batch and orders.

    A statement of its own, after the orders' locks: it sees every event a transaction that
    held those locks before committed.
    """
    named = {
        "issuer": issuer.pk,
        "fingerprints": _json_rows(fingerprints),
        "orders": _json_rows(order_ids),
    }
    batch = set(fingerprints)
    answer = _PgStored()
    with connection.cursor() as cursor:
        cursor.execute(_events_lock_sql(), named)
        rows = cursor.fetchall()
    for event_id, order_id, fingerprint, first, last, payload, outcome, is_applied in rows:
        if fingerprint in batch:
            answer.ids[fingerprint] = event_id
        if payload is not None:  # an event of one of the orders
            payload = json.loads(payload) if isinstance(payload, str) else payload
            answer.facts[order_id].append(EventFacts(event_id, fingerprint, first, last, payload))
            answer.outcomes[event_id] = (outcome, is_applied)
    return answer


# The columns of a new event, in the order of `_event_row`'s values.
_EVENT_COLUMNS = [
    "order",
    "fingerprint",
    "card_id",
    "operation_id",
    "operation",
    "operation_status",
    "production_status",
    "shipment_status",
    "payload",
    "times_received",
    "outcome",
    "validation_error",
]


def _from_json(field, index: int, row: str = "r") -> str:
    """SQL reading `field`'s value at `index` of a JSON array row (text keeps its length check).

    A nullable JSON column takes JSON null as SQL NULL, as `JSONField` saves None; a column
    that cannot be NULL (an event's payload) keeps it as the JSON value D1 sent.
    """
    if field.get_internal_type() == "JSONField":
        return f"NULLIF({row}->{index}, 'null')" if field.null else f"{row}->{index}"
    if field.get_internal_type() in ("CharField", "TextField", "URLField"):
        return f"{row}->>{index}"
    return f"({row}->>{index})::{field.cast_db_type(connection)}"


def _json_rows(rows: list) -> str:
    """Rows as one JSON document: one parameter, encoded in C, whatever the batch size."""
    return json.dumps(rows, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> str:
    if isinstance(value, dt.date):  # datetimes too: ISO 8601 with their offset
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not stored by ingest")


def _event_row(item: _Item, orders, folded: dict[str, str]) -> list:
    """A new event's values, in `_EVENT_COLUMNS` order, then whether it is applied.

    `folded` holds the outcomes the fold gave the batch's new events, by fingerprint.
    """
    check = item.check
    order = orders.get((check.card_id, check.operation_id)) if check.is_tracked else None
    raw = item.raw
    details = raw.get("details") if isinstance(raw, dict) else None
    details = details if isinstance(details, dict) else {}
    shipment = details.get("shipment") if isinstance(details.get("shipment"), dict) else {}
    if not check.is_valid:
        outcome, is_applied = Outcome.INVALID, True
    elif not check.is_tracked:
        outcome, is_applied = Outcome.NOT_TRACKED, True
    elif item.fingerprint in folded:
        outcome, is_applied = folded[item.fingerprint], True
    else:
        outcome, is_applied = "", False
    return [
        order.pk if order is not None and check.is_valid else None,
        item.fingerprint,
        check.card_id or _short(raw, "cardId", 48),
        check.operation_id or _short(raw, "operationId", 64),
        check.operation[:64],
        _short(raw, "status", 32),
        _short(details, "status", 64),
        _short(shipment, "status", 64),
        raw,  # JSON null is a value D1 sent: it stays JSON null (`->` keeps it)
        item.copies,
        outcome,
        check.error,
        is_applied,
    ]


@functools.cache
def _finish_sql() -> str:
    order, event, delivery = (_table(m) for m in (CardOrder, OperationEvent, NotificationDelivery))
    change = _table(OrderChange)
    quote = connection.ops.quote_name
    fields = [CardOrder._meta.get_field(n) for n in _WRITTEN_COLUMNS]
    assignments = ", ".join(
        f"{quote(f.column)} = {_from_json(f, i + 1)}" for i, f in enumerate(fields)
    )
    event_fields = [OperationEvent._meta.get_field(n) for n in _EVENT_COLUMNS]
    event_columns = ", ".join(quote(f.column) for f in event_fields)
    event_values = ", ".join(_from_json(f, i) for i, f in enumerate(event_fields))
    applied = len(event_fields)
    # Only quoted names from the models' metadata are interpolated; values are parameters.
    # A stored event's copies and its changed outcome are written by one UPDATE: the
    # sub-statements share one snapshot, so a second UPDATE of the same row in the statement
    # would be skipped (PostgreSQL applies only one), and a copy or an outcome would be lost.
    return f"""
WITH ins AS (
  INSERT INTO {event} (issuer_id, delivery_id, source, first_received_at, last_received_at,
    applied_at, {event_columns})
  SELECT %(issuer)s, %(delivery)s, %(source)s, %(now)s, %(now)s,
    CASE WHEN (r->>{applied})::boolean THEN %(now)s::timestamptz END, {event_values}
  FROM jsonb_array_elements(%(events)s::jsonb) AS r
  ON CONFLICT (issuer_id, fingerprint) DO NOTHING
  RETURNING id, fingerprint
),
c AS MATERIALIZED (
  SELECT (c->>0)::bigint AS id, (c->>1)::integer AS copies
  FROM jsonb_array_elements(%(copies)s::jsonb) AS c
),
x AS MATERIALIZED (
  SELECT (x->>0)::bigint AS id, x->>1 AS outcome
  FROM jsonb_array_elements(%(outcomes)s::jsonb) AS x
),
e AS (
  UPDATE {event} SET
    times_received = {event}.times_received + COALESCE(cx.copies, 0),
    last_received_at = CASE WHEN cx.copies IS NULL THEN {event}.last_received_at
      ELSE %(now)s END,
    outcome = COALESCE(cx.outcome, {event}.outcome),
    applied_at = CASE WHEN cx.outcome IS NULL THEN {event}.applied_at ELSE %(now)s END
  FROM (SELECT id, c.copies, x.outcome FROM c FULL JOIN x USING (id)) AS cx
  WHERE {event}.id = cx.id
),
o AS (
  UPDATE {order} SET {assignments}
  FROM jsonb_array_elements(%(orders)s::jsonb) AS r WHERE {order}.id = (r->>0)::bigint
),
cards AS MATERIALIZED (
  SELECT card_id FROM jsonb_array_elements_text(%(cards)s::jsonb) AS card_id
)
UPDATE {delivery} SET new_count = (SELECT count(*) FROM ins),
  duplicate_count = %(total)s - (SELECT count(*) FROM ins), rejected_count = %(rejected)s
WHERE id = %(delivery)s
RETURNING (SELECT json_agg(json_build_array(id, fingerprint)) FROM ins), ARRAY(
  SELECT card_id FROM {order}
  WHERE issuer_id = %(issuer)s AND card_id = ANY(ARRAY(SELECT card_id FROM cards))
  GROUP BY card_id
  HAVING count(*) > 1 OR bool_or(exception_reason <> '' OR d1_not_found_since IS NOT NULL)
  UNION
  SELECT card_id FROM {change} WHERE issuer_id = %(issuer)s
    AND card_id = ANY(ARRAY(SELECT card_id FROM cards)) AND order_id IS NULL
)
"""  # noqa: S608


@functools.cache
def _state_getter():
    # No foreign key among the state fields: their names are their attribute names.
    return operator.attrgetter(*_WRITTEN_COLUMNS)


@dataclass
class _Finished:
    new: dict[str, int]
    busy_cards: set[str]


def _pg_finish(
    *,
    issuer,
    items,
    copies,
    orders,
    touched,
    outcomes,
    source,
    delivery,
    total,
    result,
    cards,
    now,
) -> _Finished:
    """Step 3: everything the fold decided, and the batch's events, in one statement.

    Inserts `items` (the batch's new items) as events, with the outcome the fold gave each,
    adds `copies` (stored event id → copies) to stored events, writes the `touched` orders'
    derived state and the changed `outcomes` ((key, outcome): a stored event's id, or a new
    one's fingerprint) and the delivery's counts. The stored events were locked in step 2.
    Returns the new events (fingerprint → id) and which of `cards` (cards whose order got its
    first events) the card-level pass (`cards_after_ingest`) has something to do for: a card
    with another order, an order flagged unknown at D1, or a change waiting for its order.
    """
    folded = {key: outcome for key, outcome in outcomes if isinstance(key, str)}
    state_of = _state_getter()
    named: dict[str, Any] = {
        "events": _json_rows([_event_row(items[f], orders, folded) for f in sorted(items)]),
        "copies": _json_rows(sorted(copies.items())),
        "orders": _json_rows([(o.pk, *state_of(o)) for o in touched]),
        "outcomes": _json_rows([(k, outcome) for k, outcome in outcomes if not isinstance(k, str)]),
        "issuer": issuer.pk,
        "delivery": delivery.pk,
        "source": source,
        "now": now,
        "total": total,
        "rejected": result.rejected_count,
        "cards": _json_rows(cards),
    }
    with connection.cursor() as cursor:
        cursor.execute(_finish_sql(), named)
        inserted, busy = cursor.fetchone()
    return _Finished(new={f: i for i, f in inserted or []}, busy_cards=set(busy))


# ---------------------------------------------------------------------------- re-derivation

# Every column a re-derivation writes: the derived ones (domain.order_state) and its bookkeeping.
_WRITTEN_COLUMNS = [*DERIVED_COLUMNS, "rules_version", "updated_at"]


def refresh_orders(
    orders: Sequence[CardOrder],
    *,
    now=None,
    known_events: dict[int, list[EventFacts]] | None = None,
    outcomes: dict[int, tuple[str, bool]] | None = None,
) -> None:
    """Re-derive and save the state of locked `orders` from all their events.

    Also records each event's outcome and marks unapplied events applied. Callers hold the
    orders' row locks (or SQLite's write lock) so that no concurrent ingest interleaves; the
    events read here are locked in fingerprint order (the module's lock order).
    `known_events` gives, per order id, every event of orders whose events the caller already
    holds, and `outcomes` the stored (outcome, applied) of those not just inserted; the others
    are read from the database.
    """
    now = now or timezone.now()
    before = facts_before(orders)
    changed_events = orders_derive(
        orders, now=now, known_events=known_events, outcomes=outcomes, lock=True
    )
    rows_update(orders, _WRITTEN_COLUMNS)
    rows_update(changed_events, ["outcome", "applied_at"])
    events_record(orders, before=before, now=now)


def orders_derive(
    orders: Sequence[CardOrder],
    *,
    now,
    known_events: dict[int, list[EventFacts]] | None = None,
    outcomes: dict[int, tuple[str, bool]] | None = None,
    lock: bool = False,
) -> list[OperationEvent]:
    """Re-derive `orders` in memory from their events (`tracking.domain.fold`); writes nothing.

    Sets every column of `_WRITTEN_COLUMNS` on the order objects and returns the events whose
    outcome changes (with `applied_at` = `now`), for the caller to save or only to compare.
    With `lock`, the events read are locked in fingerprint order, for a caller that saves.
    """
    return [
        OperationEvent(id=event_id, outcome=outcome, applied_at=now)
        for event_id, outcome in _orders_fold(
            orders, now=now, known_events=known_events, outcomes=outcomes, lock=lock
        )
    ]


def _orders_fold(
    orders: Sequence[CardOrder],
    *,
    now,
    known_events: dict[int, list[EventFacts]] | None = None,
    outcomes: dict[int, tuple[str, bool]] | None = None,
    lock: bool = False,
) -> list[tuple[int, str]]:
    """`orders_derive`, the changed outcomes as (event id, outcome) pairs."""
    known_events = known_events or {}
    outcomes = outcomes or {}
    by_order: dict[int, list[EventFacts]] = defaultdict(list)
    current_outcome: dict[int, tuple[str, bool]] = {}
    for order_id, facts in known_events.items():
        by_order[order_id] = list(facts)
        current_outcome.update({fact.key: outcomes.get(fact.key, ("", False)) for fact in facts})
    to_read = [o.pk for o in orders if o.pk not in known_events]
    rows = (
        events_locked(OperationEvent.objects.filter(order__in=to_read), lock=lock)
        if to_read
        else []
    )
    for event_id, order_id, fingerprint, first, last, payload, outcome, applied_at in rows:
        by_order[order_id].append(EventFacts(event_id, fingerprint, first, last, payload))
        current_outcome[event_id] = (outcome, applied_at is not None)

    changed: list[tuple[int, str]] = []
    zones = _issuer_zones(orders)
    for order in orders:
        state = derive_order_state(
            by_order[order.pk], zone=zones[order.issuer_id], d1_answer=order.d1_answer
        )
        _apply_state(order, state, now=now)
        registration_fill(order)
        for event_id, outcome in state.outcomes.items():
            if current_outcome[event_id] != (outcome, True):
                changed.append((event_id, outcome))
    return changed


def _issuer_zones(orders: Sequence[CardOrder]) -> dict[int, Any]:
    """Each order's issuer's zone (`derive_order_state(zone=...)`); read once per batch when
    the orders do not carry their issuer already (ingest's do)."""
    zones = {o.issuer_id: o.issuer.zone for o in orders if CardOrder.issuer.is_cached(o)}
    missing = {o.issuer_id for o in orders} - set(zones)
    if missing:
        for issuer in Issuer.objects.filter(pk__in=missing).only("pk", "time_zone"):
            zones[issuer.pk] = issuer.zone
    return zones


def _apply_state(order: CardOrder, state: OrderState, *, now) -> None:
    before = OrderState(
        hold_then_progress=order.reconcile_reason == ReconcileReason.HOLD_THEN_PROGRESS,
        has_conflict=order.has_conflict,
        unknown_codes=list(order.unknown_codes or []),
        incomplete_items=order.incomplete_items or 0,
        missing_steps=list(order.missing_steps or []),
    )
    order.needs_reconcile = needs_reconcile_after(
        before=before, after=state, needs_reconcile=order.needs_reconcile
    )
    order.reconcile_reason = reconcile_reason_for(state) if order.needs_reconcile else ""
    for name in FOLDED_COLUMNS:
        setattr(order, name, getattr(state, name))
    shipment = state.shipment or {}
    order.carrier = _clip(shipment.get("carrier"), 64)
    order.tracking_number = _clip(shipment.get("trackingNumber"), 255)
    order.tracking_url = _clip(shipment.get("trackingUrl"), 2048)
    order.shipment_status = _clip(shipment.get("status"), 64)
    order.shipment_class = state.shipment_class
    order.shipment_message = _clip(shipment.get("message"), 2048)
    order.shipment_final = state.shipment_final
    # An unknown code that a completion has followed (by D1's times) no longer calls for
    # attention; it stays in `unknown_codes` and on the timeline.
    order.has_unknown_status = bool(state.open_unknown_codes)
    order.has_gap = bool(state.missing_steps)
    order.rules_version = RULES_VERSION
    order.updated_at = now


def _clip(value: Any, max_len: int) -> str:
    return value[:max_len] if isinstance(value, str) else ""
