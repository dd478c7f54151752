"""Registered orders: the issuer says which orders it placed before D1 says anything about them.

- `registration_check` validates one row (API body, bulk list item or CSV line) and names every
  field that is wrong;
- `orders_register` writes many rows set-based, idempotent on (issuer, card, operation):
  a new order is inserted with what the issuer said, an existing one only gains the registration
  where it had none, and no column D1 filled is ever overwritten;
- `registered_orders_join` (called by ingest) gives D1's first word about an operation to the
  order registered for it before D1 spoke: by operationId, else by D1's correlation id
  (issuerRequestId), else by card when exactly one order of the card waits;
- `registration_fill` shows the issuer's own values where no notification said otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from tracking.models import CardOrder, Issuer
from tracking.services.audit import Actor, audit_actor

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)
CARD_ID_MAX = 48
OPERATION_ID_MAX = 64
ISSUER_ID_LENGTH = 10
TEXT_MAX = 255
FIELDS = (
    "issuer_id",
    "card_id",
    "operation_id",
    "issuer_request_id",
    "input_file_name",
    "due_date",
)
# Rows per INSERT statement: 8 parameters each stays far below SQLite's and PostgreSQL's caps.
_CHUNK = 1000


@dataclass(frozen=True)
class Registration:
    """One order the issuer placed, as it registers it."""

    issuer_id: str
    card_id: str
    operation_id: str = ""
    issuer_request_id: str = ""
    input_file_name: str = ""
    due_date: dt.date | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.issuer_id, self.card_id, self.operation_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "operation_id_given": bool(self.operation_id),
            "issuer_request_id": self.issuer_request_id,
            "input_file_name": self.input_file_name,
            "due_date": self.due_date.isoformat() if self.due_date else "",
        }


@dataclass(frozen=True)
class Registered:
    """What registration did with one row: the order and whether it was new."""

    registration: Registration
    order_id: int
    created: bool


def registration_check(
    data: Any, *, issuers: Mapping[str, Issuer] | None = None
) -> tuple[Registration | None, dict[str, str]]:
    """A valid Registration, or None and the problem of each field by name.

    `issuers` (issuer_id → active Issuer) lets a caller check many rows with one query; without
    it the issuer is looked up here. Unknown fields are refused too: a misspelt optional field
    would otherwise be lost without a word.
    """
    if not isinstance(data, dict):
        return None, {"non_field_errors": "each order must be a JSON object"}
    errors: dict[str, str] = {}
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        errors["non_field_errors"] = f"unknown field(s): {', '.join(unknown)}"

    def text(name: str, *, required: bool, max_len: int, pattern: re.Pattern | None = None) -> str:
        value = data.get(name)
        if value is None or value == "":
            if required:
                errors[name] = "This field is required."
            return ""
        if not isinstance(value, str):
            errors[name] = "Must be a string."
            return ""
        value = value.strip()
        if len(value) > max_len:
            errors[name] = f"Must be at most {max_len} characters."
        elif pattern is not None and not pattern.fullmatch(value):
            errors[name] = "Only letters, digits, '-' and '_' are allowed."
        return value

    issuer_id = text("issuer_id", required=True, max_len=ISSUER_ID_LENGTH)
    if issuer_id and len(issuer_id) != ISSUER_ID_LENGTH and "issuer_id" not in errors:
        errors["issuer_id"] = f"Must be exactly {ISSUER_ID_LENGTH} characters."
    card_id = text("card_id", required=True, max_len=CARD_ID_MAX, pattern=ID_PATTERN)
    operation_id = text(
        "operation_id", required=False, max_len=OPERATION_ID_MAX, pattern=ID_PATTERN
    )
    request_id = text("issuer_request_id", required=False, max_len=TEXT_MAX)
    file_name = text("input_file_name", required=False, max_len=TEXT_MAX)
    due_date = None
    due_text = data.get("due_date")
    if due_text not in (None, ""):
        try:
            due_date = dt.date.fromisoformat(str(due_text).strip())
        except ValueError:
            errors["due_date"] = "Must be a date, YYYY-MM-DD."
    if issuer_id and "issuer_id" not in errors:
        known = (
            issuers
            if issuers is not None
            else {
                i.issuer_id: i for i in Issuer.objects.filter(issuer_id=issuer_id, is_active=True)
            }
        )
        if issuer_id not in known:
            errors["issuer_id"] = f"Unknown or inactive issuer {issuer_id}."
    if errors:
        return None, errors
    return (
        Registration(
            issuer_id=issuer_id,
            card_id=card_id,
            operation_id=operation_id,
            issuer_request_id=request_id,
            input_file_name=file_name,
            due_date=due_date,
        ),
        {},
    )


def active_issuers(issuer_ids: Iterable[Any]) -> dict[str, Issuer]:
    """The active issuers among `issuer_ids`, by id, in one query."""
    wanted = {i.strip() for i in issuer_ids if isinstance(i, str)}
    return {i.issuer_id: i for i in Issuer.objects.filter(issuer_id__in=wanted, is_active=True)}


def orders_register(
    *,
    registrations: Sequence[Registration],
    actor: Actor,
    details: dict | None = None,
    now: dt.datetime | None = None,
) -> list[Registered]:
    """Register `registrations` (already checked), in the caller's transaction; one per row.

    Writes one `orders.register` audit entry for `actor` (rows, new, existing, and `details`
    such as the uploaded file's name) in the same transaction.

    Inserts the new orders with `registered_at` and the issuer's values; an order that exists
    (same issuer, card and operation) gains the registration only where it had none and the
    issuer's values only in columns still blank. A row without operation_id whose card already
    has an order from D1 is that order (the newest by D1's start time). Rows repeated in one call
    are one order. Set-based: a few statements per thousand rows.
    """
    now = now or timezone.now()
    issuers = active_issuers(r.issuer_id for r in registrations)
    unique: dict[tuple[str, str, str], Registration] = {}
    for registration in registrations:
        unique.setdefault(registration.key, registration)

    known = _orders_of_cards_without_operation(issuers, list(unique.values()))
    # In ingest's lock order (issuer, card, operation), so a registration and a delivery that
    # touch the same orders never wait for each other in a cycle.
    to_write = sorted(
        (r for key, r in unique.items() if key not in known),
        key=lambda r: (issuers[r.issuer_id].pk, r.card_id, r.operation_id),
    )
    written: dict[tuple[str, str, str], tuple[int, bool]] = dict(known)
    for start in range(0, len(to_write), _CHUNK):
        written.update(_upsert(issuers, to_write[start : start + _CHUNK], now=now))
    result, seen = [], set()
    for r in registrations:
        order_id, created = written[r.key]
        # A row repeated in one call created its order once.
        result.append(
            Registered(registration=r, order_id=order_id, created=created and r.key not in seen)
        )
        seen.add(r.key)
    created = sum(1 for r in result if r.created)
    audit_actor(
        actor,
        action="orders.register",
        targets=[None],
        details={
            **(details or {}),
            "rows": len(result),
            "created": created,
            "existing": len(result) - created,
        },
    )
    return result


def _orders_of_cards_without_operation(
    issuers: Mapping[str, Issuer], registrations: list[Registration]
) -> dict[tuple[str, str, str], tuple[int, bool]]:
    """Rows without operation_id whose card D1 already told about: that existing order.

    The card's operation D1 sent with the row's issuerRequestId, else its newest by D1's times.
    """
    cards: dict[int, set[str]] = defaultdict(set)
    for r in registrations:
        if not r.operation_id:
            cards[issuers[r.issuer_id].pk].add(r.card_id)
    if not cards:
        return {}
    condition = Q()
    for issuer_pk, card_ids in cards.items():
        condition |= Q(issuer_id=issuer_pk, card_id__in=sorted(card_ids))
    newest: dict[tuple[int, str], tuple] = {}
    by_request: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    rows = (
        CardOrder.objects.filter(condition)
        .exclude(operation_id="")
        .values_list("issuer_id", "card_id", "id", "start_time", "issuer_request_id")
    )
    for issuer_pk, card_id, order_id, start, request_id in rows:
        rank = (start or _NO_TIME, order_id)
        if (issuer_pk, card_id) not in newest or rank > newest[(issuer_pk, card_id)][0]:
            newest[(issuer_pk, card_id)] = (rank, order_id)
        if request_id:
            by_request[(issuer_pk, card_id, request_id)].append(order_id)
    found = {}
    for r in registrations:
        if r.operation_id:
            continue
        card = (issuers[r.issuer_id].pk, r.card_id)
        # by_request holds no "" key: a row without issuerRequestId finds nothing there.
        # D1's correlation id names the operation when it is the card's only one with it.
        same_request = by_request.get((*card, r.issuer_request_id), [])
        if len(same_request) == 1:
            found[r.key] = (same_request[0], False)
        elif card in newest:
            found[r.key] = (newest[card][1], False)
    return found


def _upsert(
    issuers: Mapping[str, Issuer], chunk: list[Registration], *, now: dt.datetime
) -> dict[tuple[str, str, str], tuple[int, bool]]:
    """One INSERT ... ON CONFLICT DO UPDATE for a chunk; new rows are those created at `now`."""
    meta = CardOrder._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = [
        "issuer",
        "card_id",
        "operation_id",
        "registered_at",
        "registration",
        "issuer_request_id",
        "input_file_name",
        "due_date",
        "created_at",
        "updated_at",
    ]
    fields = [meta.get_field(n) for n in names]
    column = {n: quote(f.column) for n, f in zip(names, fields, strict=True)}
    params: list = []
    for r in chunk:
        values = [
            issuers[r.issuer_id].pk,
            r.card_id,
            r.operation_id,
            now,
            r.as_json(),
            r.issuer_request_id,
            r.input_file_name,
            r.due_date,
            now,
            now,
        ]
        params.extend(
            f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)
        )
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"

    def keep_or_fill(name: str, blank: str) -> str:
        mine = f"{table}.{column[name]}"
        return (
            f"{column[name]} = CASE WHEN {mine} IS NULL OR {mine} = {blank} "
            f"THEN EXCLUDED.{column[name]} ELSE {mine} END"
        )

    # Only what was missing is written: D1's values (and an earlier registration) stay.
    updates = ", ".join(
        [
            f"{column['registered_at']} = COALESCE({table}.{column['registered_at']}, "
            f"EXCLUDED.{column['registered_at']})",
            f"{column['registration']} = COALESCE({table}.{column['registration']}, "
            f"EXCLUDED.{column['registration']})",
            keep_or_fill("issuer_request_id", "''"),
            keep_or_fill("input_file_name", "''"),
            f"{column['due_date']} = COALESCE({table}.{column['due_date']}, "
            f"EXCLUDED.{column['due_date']})",
        ]
    )
    conflict = ", ".join(column[n] for n in ("issuer", "card_id", "operation_id"))
    sql = (
        f"INSERT INTO {table} ({', '.join(column[n] for n in names)}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(chunk))} "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates} "
        f"RETURNING {quote('id')}, {column['issuer']}, {column['card_id']}, "
        f"{column['operation_id']}, {column['created_at']}"
    )
    by_pk = {issuer.pk: issuer.issuer_id for issuer in issuers.values()}
    created_at = meta.get_field("created_at")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    result = {}
    for order_id, issuer_pk, card_id, operation_id, created in rows:
        if isinstance(created, str):  # SQLite hands the column back as text
            created = created_at.to_python(created)
        if timezone.is_naive(created):
            created = timezone.make_aware(created, dt.UTC)
        result[(by_pk[issuer_pk], card_id, operation_id)] = (order_id, created == now)
    return result


# ---------------------------------------------------------------------------- ingest's side


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
       (`_orders_of_cards_without_operation`). Two waiting orders: which one D1 means is not
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
    newest = max(new.values(), key=lambda w: (w.start_time or _NO_TIME, w.operation_id))
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


def awaiting_first_event(order: CardOrder) -> bool:
    """A registered order D1 has said nothing about yet."""
    return order.registered_at is not None and not order.event_count


def state_summary(order: CardOrder) -> str:
    """The order's state in one sentence, plain about what the portal does not know yet."""
    if order.superseded_by_id:
        return f"Superseded by a newer operation of the same card (order {order.superseded_by_id})."
    if awaiting_first_event(order):
        since = order.registered_at.strftime("%Y-%m-%d %H:%M UTC")
        text = f"Registered by the issuer on {since}; no events from D1 yet."
        if order.d1_not_found_since is not None:
            text += " D1 does not know the card yet (404)."
        return text
    if not order.production_status:
        return "Only codes the portal does not know so far."
    status = order.production_status
    if order.shipment_status:
        status += f", carrier: {order.shipment_status}"
    return f"{status} (from D1)."
