"""Ingest's one engine interface: the steps' statements, and what they exchange.

`IngestEngine` is what each backend provides: `postgres.PostgresEngine` merges each step into
one statement of data-modifying CTEs; `portable.PortableEngine` runs ORM statements on any
backend (SQLite here). An engine only runs statements: what they store and in which order is
decided once, in `steps.ingest_operations`. `event_values` is the one rule for a new event's
columns, which both engines write.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from tracking.domain.fold import Outcome
from tracking.domain.ordering import EventFacts
from tracking.intake.ingest.prepare import IngestBatch, PreparedItem
from tracking.models import CardOrder, Issuer, NotificationDelivery

OrderKey = tuple[str, str]  # (card_id, operation_id)


@dataclass
class Begun:
    """Step 1's answer: the items whose copies were counted, and the batch's locked orders."""

    counted: set[str]
    orders: dict[OrderKey, CardOrder]


@dataclass
class StoredEvents:
    """Step 2's answer: the batch's stored events (fingerprint → id), the orders' events."""

    ids: dict[str, int] = field(default_factory=dict)
    facts: dict[int, list[EventFacts]] = field(default_factory=lambda: defaultdict(list))
    outcomes: dict[int, tuple[str, bool]] = field(default_factory=dict)


@dataclass
class Folded:
    """What step 4 writes: the fold's decisions and the batch's events, new and stored."""

    fresh: dict[str, PreparedItem]  # items not stored yet: inserted as events
    copies: dict[str, int]  # a stored event's fingerprint → copies of it in the batch
    stored_ids: dict[str, int]  # the batch's stored events, fingerprint → id
    orders: dict[OrderKey, CardOrder]
    touched: list[CardOrder]  # orders with a new event: their derived state is written
    # (key, outcome) the fold changed: a new event's fingerprint, or a stored event's id.
    outcomes: list[tuple[int | str, str]]
    first_cards: list[str]  # cards with an order that got its first events

    @property
    def new_outcomes(self) -> dict[str, str]:
        return {key: outcome for key, outcome in self.outcomes if isinstance(key, str)}

    @property
    def stored_outcomes(self) -> list[tuple[int, str]]:
        return [(key, outcome) for key, outcome in self.outcomes if not isinstance(key, str)]


@dataclass
class Finished:
    """Step 4's answer: the new events (fingerprint → id), the cards the card pass must visit."""

    new: dict[str, int]
    busy_cards: set[str]


class IngestEngine(Protocol):
    """The statements of one backend; what they do is decided in `ingest_operations`."""

    def begin(
        self,
        *,
        issuer: Issuer,
        batch: IngestBatch,
        delivery: NotificationDelivery,
        now: dt.datetime,
    ) -> Begun: ...

    def events_lock(
        self, *, issuer: Issuer, fingerprints: list[str], order_ids: list[int]
    ) -> StoredEvents: ...

    def finish(
        self,
        *,
        issuer: Issuer,
        folded: Folded,
        source: str,
        delivery: NotificationDelivery,
        batch: IngestBatch,
        now: dt.datetime,
    ) -> Finished: ...

    def copies_count(self, *, issuer: Issuer, copies: dict[str, int], now: dt.datetime) -> set[str]:
        """Add copies (fingerprint → how many) to stored events; the fingerprints counted."""
        ...

    def counts_save(self, delivery: NotificationDelivery) -> None:
        """Keep the delivery's counts (`delivery_counts_set`), unless a statement wrote them."""
        ...


# The columns of a new event, in the order of `event_values`' values.
EVENT_COLUMNS = [
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


def event_values(item: PreparedItem, orders, new_outcomes: dict[str, str]) -> list:
    """A new event's values, in `EVENT_COLUMNS` order, then whether it is applied.

    `new_outcomes` holds the outcomes the fold gave the batch's new events, by fingerprint.
    Every copy of the item in the batch is counted in `times_received`.
    """
    check, d1 = item.check, item.item
    order = orders.get(item.order_key) if check.is_tracked else None
    if not check.is_valid:
        outcome, is_applied = Outcome.INVALID, True
    elif not check.is_tracked:
        outcome, is_applied = Outcome.NOT_TRACKED, True
    elif item.fingerprint in new_outcomes:
        outcome, is_applied = new_outcomes[item.fingerprint], True
    else:
        outcome, is_applied = "", False
    return [
        order.pk if order is not None and check.is_valid else None,
        item.fingerprint,
        d1.card_id,
        d1.operation_id,
        d1.operation,
        d1.status,
        d1.production_status,
        d1.shipment_status,
        d1.payload,  # JSON null is a value D1 sent: it stays JSON null
        item.copies,
        outcome,
        check.error,
        is_applied,
    ]
