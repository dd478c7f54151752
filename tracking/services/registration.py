"""Registered orders: the issuer says which orders it placed before D1 says anything about them.

- `registration_check` (`registration_rows`) validates one row (API body, bulk list item or CSV
  line) and names every field that is wrong, whatever the row holds (NUL, lone surrogates,
  nesting, numbers); `registrations_conflicting` (`registration_conflicts`) compares rows with
  the stored orders without writing;
- `orders_register` writes many rows set-based, idempotent on (issuer, card, operation):
  a new order is inserted with what the issuer said, an existing one only gains the registration
  where it had none, no column D1 filled is ever overwritten, and a row that disagrees with the
  stored order is a conflict, reported and kept (RegistrationConflict), never applied;
- `registered_orders_join` (called by ingest) gives D1's first word about an operation to the
  order registered for it before D1 spoke: by operationId, else by D1's correlation id
  (issuerRequestId), else by card when exactly one order of the card waits;
- `registration_fill` shows the issuer's own values where no notification said otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.utils import timezone

from tracking.models import CardOrder, Issuer, RegistrationConflict
from tracking.outbound.outbox import registered_record
from tracking.services.audit import Actor, audit_actor
from tracking.services.registration_conflicts import (
    CHUNK_ROWS,
    NO_TIME,
    disagreement,
    orders_of_cards_without_operation,
    stored_values,
)
from tracking.services.registration_rows import TEXT_MAX, Registration, active_issuers

# An audit entry lists the cards of a batch up to this many rows; beyond, a count and a digest.
AUDIT_CARDS_MAX = 100


@dataclass(frozen=True)
class Registered:
    """What registration did with one row: the order, whether it was new, and any conflict.

    `conflict` names each field whose registered value disagreed with the stored one, as
    (stored, registered); such a row changed nothing and was kept as RegistrationConflict rows.
    """

    registration: Registration
    order_id: int
    created: bool
    conflict: dict[str, tuple[str, str]] = field(default_factory=dict)


def registrations_digest(registrations: Sequence[Registration]) -> str:
    """The SHA-256 of the rows as registered (stands for a large batch in the audit trail)."""
    digest = hashlib.sha256()
    for r in registrations:
        digest.update(json.dumps([*r.key, *r.compared().values()]).encode() + b"\n")
    return digest.hexdigest()


def orders_register(
    *,
    registrations: Sequence[Registration],
    actor: Actor,
    details: dict | None = None,
    refused: Sequence[dict] = (),
    source: str = "API",
    now: dt.datetime | None = None,
) -> list[Registered]:
    """Register `registrations` (already checked), in the caller's transaction; one per row.

    Inserts the new orders with `registered_at` and the issuer's values; an order that exists
    (same issuer, card and operation) gains the registration only where it had none and the
    issuer's values only in columns still blank. A row without operation_id whose card already
    has an order from D1 is that order (the newest by D1's start time). Rows repeated in one call
    are one order. Set-based: a few statements per thousand rows.

    A row whose issuer_request_id, input_file_name or due_date disagrees with the stored order
    (or with an earlier row of the same call) writes nothing: it comes back with its `conflict`
    and each field is kept as a RegistrationConflict (by `actor`, through `source`).

    Writes one `orders.register` audit entry for `actor` in the same transaction: the issuers,
    the cards (or for more than AUDIT_CARDS_MAX rows their count and a SHA-256 digest), the
    conflicts and `refused` (the rows the caller refused: index or line, and fields), with
    `details` such as the uploaded file's name and digest.
    """
    now = now or timezone.now()
    issuers = active_issuers(r.issuer_id for r in registrations)
    unique: dict[tuple[str, str, str], Registration] = {}
    repeated: dict[int, dict[str, tuple[str, str]]] = {}
    for index, registration in enumerate(registrations):
        first = unique.setdefault(registration.key, registration)
        if first is not registration and (clash := disagreement(first.compared(), registration)):
            repeated[index] = clash

    known = orders_of_cards_without_operation(issuers, list(unique.values()))
    stored = stored_values(issuers, list(unique.values()), known)
    clashes = {
        key: clash
        for key, r in unique.items()
        if key in stored and (clash := disagreement(stored[key][1], r))
    }
    # In ingest's lock order (issuer, card, operation), so a registration and a delivery that
    # touch the same orders never wait for each other in a cycle.
    to_write = sorted(
        (r for key, r in unique.items() if key not in known and key not in clashes),
        key=lambda r: (issuers[r.issuer_id].pk, r.card_id, r.operation_id),
    )
    written: dict[tuple[str, str, str], tuple[int, bool]] = dict(known)
    written.update({key: (stored[key][0], False) for key in clashes})
    for start in range(0, len(to_write), CHUNK_ROWS):
        written.update(_upsert(issuers, to_write[start : start + CHUNK_ROWS], now=now))
    result, seen = [], set()
    for index, r in enumerate(registrations):
        order_id, created = written[r.key]
        conflict = clashes.get(r.key) or repeated.get(index) or {}
        # A row repeated in one call created its order once.
        result.append(
            Registered(
                registration=r,
                order_id=order_id,
                created=created and r.key not in seen and not conflict,
                conflict=conflict,
            )
        )
        seen.add(r.key)
    _conflicts_keep(result, actor=actor, source=source, now=now)
    created = sum(1 for r in result if r.created)
    registered_record([r.order_id for r in result if r.created], now=now)
    conflicts = [
        {"index": index, "card_id": r.registration.card_id, "fields": sorted(r.conflict)}
        for index, r in enumerate(result)
        if r.conflict
    ]
    summary: dict[str, Any] = {
        "issuers": sorted({r.issuer_id for r in registrations}),
        "rows": len(result),
        "created": created,
        "existing": len(result) - created - len(conflicts),
        "conflicts": len(conflicts),
        "refused": len(refused),
    }
    if len(registrations) <= AUDIT_CARDS_MAX:
        summary["cards"] = [
            "/".join(part for part in (r.card_id, r.operation_id) if part) for r in registrations
        ]
        summary["conflicting"] = conflicts
        summary["refused_rows"] = list(refused)
    else:
        summary["rows_sha256"] = registrations_digest(registrations)
        summary["conflicting"] = conflicts[:AUDIT_CARDS_MAX]
        summary["refused_rows"] = list(refused)[:AUDIT_CARDS_MAX]
    audit_actor(
        actor,
        action="orders.register",
        targets=[None],
        details={**(details or {}), **summary},
    )
    return result


def _conflicts_keep(
    result: Sequence[Registered], *, actor: Actor, source: str, now: dt.datetime
) -> None:
    """A RegistrationConflict per disagreeing field of each row, for staff to see."""
    username = (
        actor.user.get_username()
        if actor.user is not None and getattr(actor.user, "is_authenticated", False)
        else actor.command
    )
    RegistrationConflict.objects.bulk_create(
        [
            RegistrationConflict(
                order_id=r.order_id,
                field_name=name,
                stored_value=stored[:255],
                registered_value=given[:255],
                source=source[:255],
                username=(username or "")[:150],
                created_at=now,
            )
            for r in result
            if r.conflict
            for name, (stored, given) in sorted(r.conflict.items())
        ]
    )


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
