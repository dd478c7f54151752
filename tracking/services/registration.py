"""Registered orders: the issuer says which orders it placed before D1 says anything about them.

- `registration_check` (`registration_rows`) validates one row (API body, bulk list item or CSV
  line) and names every field that is wrong, whatever the row holds (NUL, lone surrogates,
  nesting, numbers); `registrations_conflicting` (`registration_conflicts`) compares rows with
  the stored orders without writing;
- `orders_register` writes many rows set-based, idempotent on (issuer, card, operation):
  a new order is inserted with what the issuer said, an existing one only gains the registration
  where it had none, no column D1 filled is ever overwritten, and a row that disagrees with the
  stored order is a conflict, reported and kept (RegistrationConflict), never applied;
- D1's first word joins the order registered for it in the intake
  (`tracking/intake/registered_orders.py`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.utils import timezone

from tracking.models import CardOrder, Issuer, RegistrationConflict
from tracking.outbound.outbox import registered_record
from tracking.services.audit import Actor, audit_actor
from tracking.services.registration_conflicts import (
    CHUNK_ROWS,
    disagreement,
    orders_of_cards_without_operation,
    stored_values,
)
from tracking.services.registration_rows import Registration, active_issuers

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
