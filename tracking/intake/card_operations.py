"""One card, several operations: re-orders superseding older orders, pull & change results.

Called by ingest once a batch's orders are re-derived (`cards_after_ingest`), in its transaction:

- a newer PRODUCE operation of a card, by D1's own times, marks the older unfinished order
  superseded (a link to the newer one; the sweep leaves it alone from then on);
- each new UPDATE_ORDER item is parsed (`order_change_parse`: type, accepted or rejected and
  why; an unknown shape is kept and flagged) and linked to the card's PRODUCE order, whose
  list columns show the latest change; an accepted CANCEL waits for CARD_PROD_CANCELED;
- an order D1 has now spoken about stops being "unknown at D1".
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.utils.translation import gettext_lazy

from tracking.domain.d1_items import details_of
from tracking.domain.times import parse_time
from tracking.intake.locking import orders_locked
from tracking.models import CardOrder, Issuer, OrderChange, OrderChangeResult
from tracking.outbound.outbox import superseded_record

UPDATE_ORDER = "UPDATE_ORDER"
PRODUCE = "PRODUCE"
CHANGE_TYPES = ("CANCEL", "ACCELERATE", "REDIRECT", "ACCELERATE_AND_REDIRECT")
CANCEL = "CANCEL"
# An exception the portal raises itself: D1 keeps answering 404 for a registered card.
UNKNOWN_AT_D1 = "unknown_at_d1"
EXCEPTION_REASONS = {UNKNOWN_AT_D1: gettext_lazy("Unknown at D1 (404) for too long")}

# Where D1 may put the change's type and its decision: SPEC §6.1 names the types and says the
# perso centre accepts or rejects, not the field names. The first one present wins.
_TYPE_FIELDS = ("type", "updateType", "changeType", "updateOrderType")
_DECISION_FIELDS = ("result", "decision", "status")
_REASON_FIELDS = ("reason", "rejectionReason")
_DECISIONS = {
    "ACCEPTED": OrderChangeResult.ACCEPTED,
    "APPROVED": OrderChangeResult.ACCEPTED,
    "DONE": OrderChangeResult.ACCEPTED,
    "REJECTED": OrderChangeResult.REJECTED,
    "REFUSED": OrderChangeResult.REJECTED,
    "DECLINED": OrderChangeResult.REJECTED,
    "PENDING": OrderChangeResult.PENDING,
}
# Without an explicit decision, the operation's own status says it.
_OPERATION_STATUS_DECISIONS = {
    "SUCCESSFUL": OrderChangeResult.ACCEPTED,
    "FAILED": OrderChangeResult.REJECTED,
    "PENDING": OrderChangeResult.PENDING,
}


@dataclass(frozen=True)
class ParsedChange:
    """What one UPDATE_ORDER item says, as far as the portal can read it."""

    change_type: str
    result: str
    reason: str
    is_known_shape: bool
    start_time: dt.datetime | None
    end_time: dt.datetime | None


def _first_text(source: Mapping[str, Any], names: Iterable[str]) -> str:
    for name in names:
        value = source.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def order_change_parse(item: Any) -> ParsedChange:
    """Read an UPDATE_ORDER item; anything unreadable gives an unknown, flagged shape."""
    item = item if isinstance(item, dict) else {}
    details = details_of(item)
    change_type = _first_text(details, _TYPE_FIELDS) or _first_text(item, _TYPE_FIELDS)
    decision = _first_text(details, _DECISION_FIELDS).upper()
    result = _DECISIONS.get(decision)
    if result is None and not decision:
        status = item.get("status") if isinstance(item.get("status"), str) else ""
        result = _OPERATION_STATUS_DECISIONS.get(status.upper())
    reason = (
        _first_text(details, _REASON_FIELDS)
        or _first_text(item, ("error",))
        or _first_text(item, ("errorCode",))
    )
    known = change_type.upper() in CHANGE_TYPES and result is not None
    return ParsedChange(
        change_type=change_type.upper()[:32]
        if change_type.upper() in CHANGE_TYPES
        else change_type[:32],
        result=result or OrderChangeResult.UNKNOWN,
        reason=reason[:2000],
        is_known_shape=known,
        start_time=parse_time(item.get("startTime")),
        end_time=parse_time(item.get("endTime")),
    )


# ---------------------------------------------------------------------------- after ingest

_ORDER_FIELDS = (
    "id",
    "card_id",
    "operation_id",
    "operation",
    "start_time",
    "registered_at",
    "event_count",
    "is_terminal",
    "production_status",
    "superseded_by_id",
    "exception_reason",
    "d1_not_found_since",
    "cancel_accepted_at",
)


def cards_after_ingest(
    *,
    issuer: Issuer,
    card_ids: Iterable[str],
    update_items: Sequence[tuple[int, str, Any]] = (),
    now: dt.datetime,
) -> None:
    """The card-level consequences of a batch: changes recorded, older orders superseded.

    `update_items` are the batch's new UPDATE_ORDER events as (event id, card id, item).
    Writes OrderChange rows and the few CardOrder columns this module owns. Two queries when
    nothing is to be done.
    """
    card_ids = sorted({c for c in card_ids if c})
    if not card_ids:
        return
    for event_id, card_id, item in update_items:
        parsed = order_change_parse(item)
        OrderChange.objects.create(
            issuer=issuer,
            event_id=event_id,
            card_id=card_id,
            operation_id=str(item.get("operationId") or "")[:64] if isinstance(item, dict) else "",
            change_type=parsed.change_type,
            result=parsed.result,
            reason=parsed.reason,
            is_known_shape=parsed.is_known_shape,
            start_time=parsed.start_time,
            end_time=parsed.end_time,
            created_at=now,
        )
    # Ingest locked every order of these cards before any event; an order added since by
    # another transaction is left to that transaction rather than waited for after the events
    # (`tracking.intake.locking`).
    cards = orders_locked(
        CardOrder.objects.filter(issuer=issuer, card_id__in=card_ids), skip_locked=True, no_key=True
    )
    orders = list(cards.only(*_ORDER_FIELDS))
    by_card: dict[str, list[CardOrder]] = defaultdict(list)
    for order in orders:
        by_card[order.card_id].append(order)

    spoken = [
        o.pk for o in orders if o.event_count and (o.exception_reason or o.d1_not_found_since)
    ]
    if spoken:
        CardOrder.objects.filter(pk__in=spoken).update(exception_reason="", d1_not_found_since=None)
    for card_orders in by_card.values():
        if len(card_orders) > 1:
            _supersede_older(card_orders, now=now)

    pending = list(
        OrderChange.objects.filter(issuer=issuer, card_id__in=card_ids, order__isnull=True)
    )
    if pending:
        _changes_link(pending, by_card)


def _d1_time(order: CardOrder) -> tuple:
    return (order.start_time, order.pk)


def _supersede_older(card_orders: list[CardOrder], *, now: dt.datetime) -> None:
    """Mark the card's older unfinished PRODUCE orders superseded by its newest operation.

    D1's times decide which operation is newest, so an order superseded while the portal knew
    less (registered, then shown by D1 to have begun last) is restored when it speaks.
    """
    produce = [o for o in card_orders if o.operation in (PRODUCE, "")]
    spoken = [o for o in produce if o.start_time is not None]
    if not spoken:
        return
    newest = max(spoken, key=_d1_time)
    if newest.superseded_by_id:
        CardOrder.objects.filter(pk=newest.pk).update(superseded_by=None, superseded_at=None)
        newest.superseded_by_id = None
    older = []
    for order in produce:
        if order is newest or order.superseded_by_id or order.is_terminal:
            continue
        if order.start_time is not None:
            is_older = order.start_time < newest.start_time
        elif newest.registered_at is not None and order.registered_at is not None:
            # Both placed by the issuer: the one it registered first is the older, whatever
            # D1's clock says about the other.
            is_older = order.registered_at < newest.registered_at
        else:
            # Registered and never spoken about: D1 moved on to an operation it began later.
            # One registered without an operationId would have taken that operation when it
            # arrived (registered_orders_join) if it were its own; it has an order of its own.
            is_older = order.registered_at is not None and newest.start_time > order.registered_at
        if is_older:
            older.append(order.pk)
    if older:
        CardOrder.objects.filter(pk__in=older, superseded_by__isnull=True).update(
            superseded_by=newest.pk,
            superseded_at=now,
            needs_reconcile=False,
            reconcile_next_at=None,
            reconcile_claimed_until=None,
        )
        superseded_record(older, now=now)


def _changes_link(pending: list[OrderChange], by_card: Mapping[str, list[CardOrder]]) -> None:
    """Link each change to its card's current PRODUCE order; update that order's columns."""
    touched: dict[int, CardOrder] = {}
    for change in pending:
        candidates = [
            o
            for o in by_card.get(change.card_id, [])
            if o.operation in (PRODUCE, "") and not o.superseded_by_id
        ]
        if not candidates:
            continue  # linked when the card's order appears
        target = max(
            candidates,
            key=lambda o: (
                o.start_time or o.registered_at or dt.datetime.min.replace(tzinfo=dt.UTC),
                o.pk,
            ),
        )
        change.order_id = target.pk
        change.save(update_fields=["order"])
        touched[target.pk] = target
    for order in touched.values():
        order_changes_summarise(order)


def order_changes_summarise(order: CardOrder) -> None:
    """Write the order's latest change and its unconfirmed accepted CANCEL from its changes."""
    changes = list(OrderChange.objects.filter(order_id=order.pk))
    if not changes:
        return
    latest = max(
        changes,
        key=lambda c: (c.end_time or c.start_time or c.created_at, c.created_at, c.pk),
    )
    accepted_cancels = [
        c.created_at
        for c in changes
        if c.change_type == CANCEL and c.result == OrderChangeResult.ACCEPTED
    ]
    CardOrder.objects.filter(pk=order.pk).update(
        change_type=latest.change_type[:32],
        # An unknown shape shows as such, whatever part of it could be read.
        change_result=latest.result if latest.is_known_shape else OrderChangeResult.UNKNOWN,
        cancel_accepted_at=min(accepted_cancels) if accepted_cancels else None,
        # An accepted cancellation is worth asking D1 about at once.
        **(
            {"reconcile_next_at": None} if accepted_cancels and not order.cancel_accepted_at else {}
        ),
    )


def card_orders(order: CardOrder) -> list[CardOrder]:
    """The other orders of the same card at the same issuer, newest operation first."""
    others = CardOrder.objects.filter(issuer_id=order.issuer_id, card_id=order.card_id).exclude(
        pk=order.pk
    )
    return sorted(
        others.only(
            "id",
            "card_id",
            "operation_id",
            "operation",
            "production_status",
            "start_time",
            "registered_at",
            "superseded_by_id",
            "event_count",
        ),
        key=lambda o: (
            o.start_time or o.registered_at or dt.datetime.min.replace(tzinfo=dt.UTC),
            o.pk,
        ),
        reverse=True,
    )


def superseded_condition() -> Q:
    return Q(superseded_by__isnull=False)
