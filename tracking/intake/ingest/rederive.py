"""Re-derivation: an order's state folded again from its events, by ingest and after a rule change.

`refresh_orders` folds locked orders and saves what changed (ingest, reconciliation, staff
actions); `orders_derive` folds in memory only. `orders_rederive` folds every stored order again
with the current rules (`tracking.domain.rules`, a new RULES_VERSION), in batches of ordered
primary keys (constant memory, one short transaction per batch, each order locked while it is
re-derived), and reports per field how many orders change, with examples.
`masked_identifiers_count` says how many stored ids an older release masked.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tracking.domain.flags import ReconcileReason, needs_reconcile_after, reconcile_reason_for
from tracking.domain.fold import RULES_VERSION, derive_order_state
from tracking.domain.order_state import DERIVED_COLUMNS, FOLDED_COLUMNS, OrderState
from tracking.domain.ordering import EventFacts
from tracking.infrastructure.bulk import rows_update
from tracking.intake.locking import events_locked, orders_locked
from tracking.intake.registered_orders import registration_fill
from tracking.models import CardOrder, Issuer, OperationEvent
from tracking.outbound.outbox import events_record, facts_before

# Every column a re-derivation writes: the derived ones (tracking.domain.rules) and its bookkeeping.
WRITTEN_COLUMNS = [*DERIVED_COLUMNS, "rules_version", "updated_at"]


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
    rows_update(orders, WRITTEN_COLUMNS)
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
    """Re-derive `orders` in memory from their events (`tracking.domain.rules`); writes nothing.

    Sets every column of `WRITTEN_COLUMNS` on the order objects and returns the events whose
    outcome changes (with `applied_at` = `now`), for the caller to save or only to compare.
    With `lock`, the events read are locked in fingerprint order, for a caller that saves.
    """
    return [
        OperationEvent(id=event_id, outcome=outcome, applied_at=now)
        for event_id, outcome in orders_fold(
            orders, now=now, known_events=known_events, outcomes=outcomes, lock=lock
        )
    ]


def orders_fold(
    orders: Sequence[CardOrder],
    *,
    now,
    known_events: dict[int, list[EventFacts]] | None = None,
    outcomes: dict[int, tuple[str, bool]] | None = None,
    lock: bool = False,
) -> list[tuple[int | str, str]]:
    """`orders_derive`, the changed outcomes as (event key, outcome) pairs (a key is an event's
    id, or the fingerprint of one not written yet)."""
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

    changed: list[tuple[int | str, str]] = []
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


# ---------------------------------------------------------------------------- after a rule change

# The columns whose change is reported; the stamp and `updated_at` are bookkeeping.
REPORTED_FIELDS = DERIVED_COLUMNS


@dataclass(frozen=True)
class FieldChange:
    order: str  # "card / operation"
    before: Any
    after: Any


@dataclass
class RederiveReport:
    """What a re-derivation found (and, unless a dry run, wrote)."""

    dry_run: bool
    total: int = 0  # orders to look at
    seen: int = 0
    changed: int = 0  # orders whose reported state changes
    restamped: int = 0  # orders whose state is the same but was stamped by older rules
    events_changed: int = 0  # events whose outcome (what it did) changes
    fields: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[FieldChange]] = field(default_factory=dict)


def orders_rederive(
    *,
    issuer: Issuer | None = None,
    outdated_only: bool = False,
    dry_run: bool = False,
    batch_size: int = 500,
    examples: int = 3,
    progress: Callable[[RederiveReport], None] | None = None,
) -> RederiveReport:
    """Fold every order (of `issuer`, or all) again from its events with the current rules.

    `outdated_only` limits it to the orders stamped by older rules (RULES_VERSION), which is
    what a deploy needs after a rule change and costs nothing once they are up to date.

    Writes, unless `dry_run`, the derived columns, the rule-version stamp and `updated_at` of
    the orders whose state or stamp changes, and the outcome of the events whose outcome
    changes; orders already derived by the current rules and unchanged are not written, so a
    second run writes nothing. Calls `progress` after each batch. Raises only database errors.
    """
    orders = CardOrder.objects.order_by("pk")
    if issuer is not None:
        orders = orders.filter(issuer=issuer)
    if outdated_only:
        orders = orders.filter(rules_version__lt=RULES_VERSION)
    report = RederiveReport(dry_run=dry_run, total=orders.count())
    last_pk = 0
    while True:
        with transaction.atomic():
            page_ids = list(orders.filter(pk__gt=last_pk).values_list("pk", flat=True)[:batch_size])
            if not page_ids:
                break
            last_pk = page_ids[-1]
            page = CardOrder.objects.filter(pk__in=page_ids)
            if not dry_run:
                page = orders_locked(page)  # then their events, in the lock order
            batch = sorted(page, key=lambda order: order.pk)
            _rederive_batch(batch, report=report, examples=examples)
        if progress is not None:
            progress(report)
    return report


def _rederive_batch(batch: list[CardOrder], *, report: RederiveReport, examples: int) -> None:
    before = {
        order.pk: ({name: getattr(order, name) for name in REPORTED_FIELDS}, order.rules_version)
        for order in batch
    }
    now = timezone.now()
    facts = facts_before(batch)
    changed_events = orders_derive(batch, now=now, lock=not report.dry_run)
    to_write = []
    for order in batch:
        values, stamp = before[order.pk]
        changed = [name for name in REPORTED_FIELDS if values[name] != getattr(order, name)]
        report.seen += 1
        if changed:
            report.changed += 1
            for name in changed:
                report.fields[name] += 1
                kept = report.examples.setdefault(name, [])
                if len(kept) < examples:
                    label = f"{order.card_id} / {order.operation_id}"
                    kept.append(FieldChange(label, values[name], getattr(order, name)))
        elif stamp != RULES_VERSION:
            report.restamped += 1
        if changed or stamp != RULES_VERSION:
            to_write.append(order)
    report.events_changed += len(changed_events)
    if report.dry_run:
        return
    rows_update(to_write, WRITTEN_COLUMNS)
    rows_update(changed_events, ["outcome", "applied_at"])
    events_record(to_write, before=facts, rederive=True, now=now)


# ---------------------------------------------------------------------------- masked ids

# What the portal stored for an id it masked before identifiers were told apart from text
# (`tracking.domain.masking`): 9-15 asterisks, then the last four digits.
MASKED_ID = re.compile(r"\*{9,15}\d{4}(?!\d)")
_MASK_PROBE = "*" * 9
# The identifier columns of orders and events, and an event's identifier fields in its payload.
_ORDER_ID_COLUMNS = ("card_id", "operation_id", "issuer_request_id", "input_file_name")
_EVENT_ID_COLUMNS = ("card_id", "operation_id")
_PAYLOAD_ID_FIELDS = (
    ("cardId",),
    ("operationId",),
    ("issuerRequestId",),
    ("inputFileName",),
    ("details", "issuerRequestId"),
    ("details", "inputFileName"),
)


@dataclass(frozen=True)
class MaskedIdentifiers:
    """How many stored orders and events hold an id that was masked (and cannot be restored)."""

    orders: int
    events: int


def masked_identifiers_count(*, issuer: Issuer | None = None) -> MaskedIdentifiers:
    """Count the orders and events whose identifiers hold a masked run (`************3452`).

    Reads only: the digits a mask replaced are gone, so these ids cannot be restored; staff
    find such orders by the last four digits. An indexed probe, then a check of each candidate.
    """
    orders = CardOrder.objects.all()
    events = OperationEvent.objects.all()
    if issuer is not None:
        orders, events = orders.filter(issuer=issuer), events.filter(issuer=issuer)
    order_probe = Q()
    for column in _ORDER_ID_COLUMNS:
        order_probe |= Q(**{f"{column}__contains": _MASK_PROBE})
    masked_orders = sum(
        1
        for row in orders.filter(order_probe).values_list(*_ORDER_ID_COLUMNS)
        if any(MASKED_ID.search(value or "") for value in row)
    )
    event_probe = Q()
    for column in _EVENT_ID_COLUMNS:
        event_probe |= Q(**{f"{column}__contains": _MASK_PROBE})
    for path in _PAYLOAD_ID_FIELDS:
        event_probe |= Q(**{f"payload__{'__'.join(path)}__icontains": _MASK_PROBE})
    masked_events = 0
    for card_id, operation_id, payload in events.filter(event_probe).values_list(
        *_EVENT_ID_COLUMNS, "payload"
    ):
        in_payload = [_payload_text(payload, path) for path in _PAYLOAD_ID_FIELDS]
        values = [card_id, operation_id, *in_payload]
        masked_events += any(MASKED_ID.search(value) for value in values)
    return MaskedIdentifiers(orders=masked_orders, events=masked_events)


def _payload_text(payload: Any, path: tuple[str, ...]) -> str:
    for name in path:
        payload = payload.get(name) if isinstance(payload, dict) else None
    return payload if isinstance(payload, str) else ""
