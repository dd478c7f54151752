"""Re-derive stored orders with the current rules: what a rule change changes, batch by batch.

After a change to `tracking.domain.fold` (a new RULES_VERSION), the state stored on each order was
produced by the old rules. `orders_rederive` folds every order again from its stored events, in
batches of ordered primary keys (constant memory, one short transaction per batch, each order
locked while it is re-derived), and reports per field how many orders change, with examples.
`masked_identifiers_count` says how many stored ids an older release masked.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tracking.domain.fold import RULES_VERSION
from tracking.domain.order_state import DERIVED_COLUMNS
from tracking.infrastructure.bulk import rows_update
from tracking.intake.ingest import orders_derive
from tracking.models import CardOrder, Issuer, OperationEvent
from tracking.outbound.outbox import events_record, facts_before

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
                # Locked in ingest's lock order (by card and operation), then their events.
                page = page.order_by("issuer_id", "card_id", "operation_id").select_for_update()
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
    rows_update(to_write, [*DERIVED_COLUMNS, "rules_version", "updated_at"])
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
