"""Ingest's steps: the rules of storing a batch, written once over an engine's statements.

`ingest_operations` is the one path for webhooks, on-demand answers (reconciliation) and
replays. It is set-based, so a batch of 50 items costs about as many queries as one item:

1. `begin`: the delivery row; then either the copies counted (every item is stored already:
   nothing else is locked, so a retry storm never queues on an order's lock) or the batch's
   orders upserted and locked (`tracking.intake.locking` owns the lock order);
2. `events_lock`: the stored events of the batch and of its orders, locked and read;
3. the fold (`tracking.domain.rules`, through `rederive.orders_fold`), in memory, before the new
   events are written, so that each is written once with its outcome (a new event is known to
   the fold by its fingerprint, a stored one by its id);
4. `finish`: the new events, the stored ones' copies, the orders' state, the changed outcomes
   and the delivery's counts; then the card-level pass (`cards_after_ingest`).

An engine (`engine.IngestEngine`) only runs statements: `postgres.PostgresEngine` merges each
step into one statement of data-modifying CTEs; `portable.PortableEngine` runs ORM statements
on any backend (SQLite here). Everything the statements do not decide is here, once.
The caller owns the transaction: nothing is acknowledged before it commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from tracking.domain.d1_items import D1Payload
from tracking.domain.ordering import EventFacts
from tracking.intake.card_operations import UPDATE_ORDER, cards_after_ingest
from tracking.intake.ingest.engine import Folded, IngestEngine
from tracking.intake.ingest.portable import PortableEngine
from tracking.intake.ingest.postgres import PostgresEngine
from tracking.intake.ingest.prepare import IngestBatch, IngestResult, PreparedItem, ingest_prepare
from tracking.intake.ingest.rederive import orders_fold
from tracking.intake.locking import transaction_required
from tracking.models import CardOrder, EventSource, Issuer, NotificationDelivery
from tracking.outbound.outbox import events_record, facts_before


def ingest_engine() -> IngestEngine:
    """The engine for the default connection's backend."""
    return PostgresEngine() if connection.vendor == "postgresql" else PortableEngine()


def ingest_operations(
    *,
    issuer: Issuer,
    operations: Sequence[D1Payload],
    source: str = EventSource.WEBHOOK,
    delivery: NotificationDelivery,
    prepared: IngestBatch | None = None,
) -> IngestResult:
    """Store `operations` for `issuer` and re-derive every order they touch.

    Writes events (new or `times_received` += copies), upserts card orders and saves their
    derived state; invalid items are stored with their reason and outcome `invalid` (an item
    holding what no column can hold, escaped: `tracking.domain.validation.item_storable`); card
    numbers in an item's text are masked before it is stored, its identifiers kept exactly as
    sent (`tracking.domain.masking`). `delivery` is inserted with the first statement when it
    is not saved yet; its `new_count`, `duplicate_count` and `rejected_count` are written.
    `prepared` is `ingest_prepare`'s answer for these operations, when the caller needed it
    first. Must run inside a transaction (`LockOutsideTransaction` otherwise). Raises only
    database errors (the caller answers 5xx so D1 retries).
    """
    transaction_required()
    batch = prepared if prepared is not None else ingest_prepare(operations)
    now = timezone.now()
    engine = ingest_engine()
    result = batch.result
    # Written with the delivery as if every item were a copy: true when step 1 counts them all.
    result.duplicate_count = batch.total
    delivery_counts_set(delivery, result)
    begun = engine.begin(issuer=issuer, batch=batch, delivery=delivery, now=now)
    unseen = {f: item for f, item in batch.items.items() if f not in begun.counted}
    if unseen:
        _unseen_store(
            engine, issuer=issuer, batch=batch, unseen=unseen, orders=begun.orders, source=source,
            delivery=delivery, now=now,
        )  # fmt: skip
    delivery_counts_set(delivery, result)
    engine.counts_save(delivery)
    return result


def _unseen_store(
    engine: IngestEngine, *, issuer, batch, unseen, orders, source, delivery, now
) -> None:
    """Steps 2 to 4 for the items step 1 did not count as copies."""
    result = batch.result
    stored = engine.events_lock(
        issuer=issuer,
        fingerprints=sorted(unseen),
        order_ids=[o.pk for o in orders.values() if o.event_count],
    )
    fresh = {f: item for f, item in unseen.items() if f not in stored.ids}
    touched, known = _fold_inputs(fresh=fresh, orders=orders, now=now)
    first_events = {pk for pk, order in touched.items() if order.event_count == 0}
    known = {pk: [*stored.facts.get(pk, []), *facts] for pk, facts in known.items()}
    before = facts_before(touched.values())
    outcomes = orders_fold(
        list(touched.values()), now=now, known_events=known, outcomes=stored.outcomes
    )
    folded = Folded(
        fresh=fresh,
        copies={f: i.copies for f, i in unseen.items() if f in stored.ids},
        stored_ids=stored.ids,
        orders=orders,
        touched=list(touched.values()),
        outcomes=outcomes,
        first_cards=sorted({o.card_id for o in touched.values() if o.pk in first_events}),
    )
    finished = engine.finish(
        issuer=issuer, folded=folded, source=source, delivery=delivery, batch=batch, now=now
    )
    events_record(folded.touched, before=before, now=now)
    new_events = finished.new
    # A copy inserted by a transaction this one could not see yet (an item without an order
    # to lock: invalid, or not tracked): counted afresh, in a statement that sees it.
    engine.copies_count(
        issuer=issuer,
        copies={f: i.copies for f, i in fresh.items() if f not in new_events},
        now=now,
    )
    # Each new item's other copies were inserted with it (`event_values`: times_received).
    result.new_count = len(new_events)
    result.duplicate_count = batch.total - result.new_count
    _cards_update(
        issuer=issuer,
        items=unseen,
        new_events=new_events,
        first_events=first_events,
        orders=orders,
        now=now,
        quiet_cards=set(folded.first_cards) - finished.busy_cards,
    )
    result.order_ids = {o.pk for o in orders.values()}


def delivery_counts_set(delivery: NotificationDelivery, result: IngestResult) -> None:
    """Put `result`'s counts on `delivery`: the one place a delivery's counts are decided."""
    delivery.new_count = result.new_count
    delivery.duplicate_count = result.duplicate_count
    delivery.rejected_count = result.rejected_count


def _fold_inputs(*, fresh: dict[str, PreparedItem], orders, now):
    """The orders a batch changes and the facts of their new events, by order id.

    Only orders that get a new event can change; a new event is known by its fingerprint until
    it is written. For an order that had no events before, the new events are all it has, so
    they need not be read back.
    """
    touched: dict[int, CardOrder] = {}
    facts: dict[int, list[EventFacts]] = defaultdict(list)
    for item in fresh.values():
        if not item.is_foldable:
            continue
        order = orders[item.order_key]
        touched[order.pk] = order
        facts[order.pk].append(EventFacts(item.fingerprint, item.fingerprint, now, now, item.raw))
    return touched, facts


def _cards_update(
    *, issuer: Issuer, items, new_events, first_events, orders, now, quiet_cards=frozenset()
) -> None:
    """The issuer's side of a batch: pull & change results, re-ordered cards superseding.

    Only a card with an order that just got its first events (a new operation, a registered
    order joined) or with a new UPDATE_ORDER can change here; the usual batch costs nothing.
    `quiet_cards` are cards the engine saw need nothing (`Finished.busy_cards`).
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
