"""D1's first word about an operation joins the order the issuer registered for it.

`registered_orders_join` (called by ingest) gives a batch's new operations to the orders
registered before D1 spoke: by operationId, else by D1's correlation id (issuerRequestId), else
by card when exactly one order of the card waits. `registration_fill` shows the issuer's own
values where no notification said otherwise. The registration itself is a service
(`tracking/services/registration.py`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracking.domain.validation import TEXT_MAX
from tracking.models import CardOrder, Issuer

NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class FirstWord:
    """What a batch says of one (card, operation), as the registration join reads it."""

    card_id: str
    operation_id: str
    issuer_request_id: str = ""
    start_time: dt.datetime | None = None


def registered_orders_join(*, issuer: Issuer, words: Iterable[FirstWord]) -> int:
    """Give a batch's new operations to the orders registered for them before D1 spoke.

    A registered order waits for D1's first word while it has no events. An operation joins:
    1. by `operationId`: the order registered with it is its order already (same key);
    2. else by `issuerRequestId`, D1's correlation id: the one waiting order of the card
       registered with it. That order may have been registered with another operationId (the
       one D1 answered the order with, if D1's notifications use another one: SPEC §8 q12);
       it takes D1's;
    3. else by `cardId`: when the card's only waiting order was registered without an
       operationId, it takes the newest of the card's new operations by D1's start time, the
       operation a registration made after D1 spoke would have found
       (`orders_of_cards_without_operation`). Two waiting orders: which one D1 means is not
       known, and neither joins.
    Several new operations of one card in one batch are matched alike. Writes the joined
    orders' operation_id; the caller holds the locks of every order of these cards. Returns
    how many orders joined. One indexed query when nothing waits (the usual case).
    """
    by_card: dict[str, dict[str, FirstWord]] = defaultdict(dict)
    for word in words:
        by_card[word.card_id].setdefault(word.operation_id, word)
    if not by_card:
        return 0
    orders = list(
        CardOrder.objects.filter(
            issuer=issuer, card_id__in=sorted(by_card), registered_at__isnull=False, event_count=0
        ).values_list("id", "card_id", "operation_id", "issuer_request_id", "registration")
    )
    # An order the batch names by its operationId is joined by it (step 1).
    waiting_orders = [row for row in orders if row[2] not in by_card[row[1]]]
    if not waiting_orders:
        return 0
    existing: dict[str, set[str]] = defaultdict(set)
    for card_id, operation_id in CardOrder.objects.filter(
        issuer=issuer, card_id__in=sorted({row[1] for row in waiting_orders})
    ).values_list("card_id", "operation_id"):
        existing[card_id].add(operation_id)
    waiting: dict[str, dict[int, _Waiting]] = defaultdict(dict)
    for order_id, card_id, operation_id, request_id, registration in waiting_orders:
        request_id = request_id or _registered_request_id(registration)
        waiting[card_id][order_id] = _Waiting(operation_id, request_id)
    joined = 0
    for card_id in sorted(waiting):
        new = {op: word for op, word in by_card[card_id].items() if op not in existing[card_id]}
        for order_id, was, operation_id in _card_join(waiting[card_id], new):
            # The conditions again in the UPDATE: a concurrent batch may have joined it first.
            joined += CardOrder.objects.filter(pk=order_id, operation_id=was, event_count=0).update(
                operation_id=operation_id
            )
    return joined


@dataclass(frozen=True)
class _Waiting:
    operation_id: str
    issuer_request_id: str


def _card_join(
    waiting: dict[int, _Waiting], new: dict[str, FirstWord]
) -> list[tuple[int, str, str]]:
    """(order id, its operation id, D1's operation id) for one card: by request, then card."""
    pairs = []
    waiting, new = dict(waiting), dict(new)
    for operation_id, word in sorted(new.items()):
        wanted = word.issuer_request_id
        if not wanted:
            continue
        matching = [pk for pk, order in waiting.items() if order.issuer_request_id == wanted]
        if len(matching) == 1:
            pairs.append((matching[0], waiting[matching[0]].operation_id, operation_id))
            del waiting[matching[0]], new[operation_id]
    if len(waiting) != 1 or not new:
        return pairs  # nothing left, or which waiting order D1 means is not known
    ((order_id, order),) = waiting.items()
    if order.operation_id:
        return pairs  # registered with an operationId: only that id or its request joins it
    newest = max(new.values(), key=lambda w: (w.start_time or NO_TIME, w.operation_id))
    pairs.append((order_id, "", newest.operation_id))
    return pairs


def _registered_request_id(registration: Any) -> str:
    if not isinstance(registration, dict):
        return ""
    value = registration.get("issuer_request_id")
    return value if isinstance(value, str) else ""


def registration_fill(order: CardOrder) -> None:
    """The issuer's registered values in the columns no notification filled (in memory)."""
    registration = order.registration
    if not isinstance(registration, dict):
        return
    if not order.issuer_request_id:
        order.issuer_request_id = str(registration.get("issuer_request_id") or "")[:TEXT_MAX]
    if not order.input_file_name:
        order.input_file_name = str(registration.get("input_file_name") or "")[:TEXT_MAX]
    if order.due_date is None and registration.get("due_date"):
        with contextlib.suppress(TypeError, ValueError):
            order.due_date = dt.date.fromisoformat(registration["due_date"])
