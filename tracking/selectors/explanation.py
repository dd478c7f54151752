"""Why an order shows what it shows: the fold's own record of which rule and event decided each
field, for the order page and the read API."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext

from tracking.domain.fold import derive_order_state
from tracking.domain.order_state import Rule
from tracking.domain.ordering import EventFacts
from tracking.models import CardOrder, OperationEvent


@dataclass(frozen=True)
class ExplanationRow:
    """One field of the order: its value, the rule (code and words) and the deciding event."""

    field: str
    value: Any
    rule: str
    event_id: int | None

    @property
    def rule_text(self) -> str:
        text = Rule.TEXT.get(self.rule)
        return gettext(text) if text else self.rule

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "rule": self.rule,
            "event_id": self.event_id,
        }


def order_explanation(order: CardOrder) -> list[ExplanationRow]:
    """Fold the order's stored events again (writes nothing) and say what decided each field.

    The reconcile reason also reads the order's bookkeeping: once D1 has answered on demand the
    order no longer asks, even while the events still give a reason (`Rule.ANSWERED_BY_D1`).
    """
    facts = [
        EventFacts(pk, fingerprint, first, last, payload)
        for pk, fingerprint, first, last, payload in OperationEvent.objects.filter(
            order=order
        ).values_list("pk", "fingerprint", "first_received_at", "last_received_at", "payload")
    ]
    state = derive_order_state(facts, zone=order.issuer.zone, d1_answer=order.d1_answer)
    rows = [ExplanationRow(e.field, _plain(e.value), e.rule, e.event) for e in state.explanation]
    if not order.needs_reconcile:
        rows = [
            ExplanationRow(r.field, "", Rule.ANSWERED_BY_D1, r.event_id)
            if r.field == "reconcile_reason"
            else r
            for r in rows
        ]
    return rows


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO 8601 text, everything else as it is."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value
