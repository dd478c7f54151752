"""Registration rows against the stored orders (reads only): which order a row is, and the fields
where it disagrees with what the order already holds (a conflict: kept, never applied).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence

from django.db.models import Q

from tracking.models import CardOrder, Issuer
from tracking.services.registration_rows import Registration, active_issuers

# The issuer's values a later registration may not change once stored (a conflict instead).
COMPARED_FIELDS = ("issuer_request_id", "input_file_name", "due_date")
# Rows per statement: 8 parameters each stays far below SQLite's and PostgreSQL's caps.
CHUNK_ROWS = 1000
# Before every time D1 gives: an operation without a start time is the oldest.
NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


def registrations_conflicting(
    registrations: Sequence[Registration],
) -> dict[int, dict[str, tuple[str, str]]]:
    """Which rows `orders_register` would refuse as conflicts, by index; writes nothing.

    For a preview: the stored orders as they are now, and rows repeated with other values.
    """
    issuers = active_issuers(r.issuer_id for r in registrations)
    unique: dict[tuple[str, str, str], Registration] = {}
    found: dict[int, dict[str, tuple[str, str]]] = {}
    for index, registration in enumerate(registrations):
        first = unique.setdefault(registration.key, registration)
        if first is not registration and (clash := disagreement(first.compared(), registration)):
            found[index] = clash
    known = orders_of_cards_without_operation(issuers, list(unique.values()))
    stored = stored_values(issuers, list(unique.values()), known)
    for index, registration in enumerate(registrations):
        if registration.key in stored and (
            clash := disagreement(stored[registration.key][1], registration)
        ):
            found.setdefault(index, clash)
    return found


def disagreement(stored: Mapping[str, str], registration: Registration) -> dict:
    """Each compared field where both sides hold a value and the values differ."""
    given = registration.compared()
    return {
        name: (stored[name], given[name])
        for name in COMPARED_FIELDS
        if stored.get(name) and given[name] and stored[name] != given[name]
    }


def stored_values(
    issuers: Mapping[str, Issuer],
    registrations: list[Registration],
    known: Mapping[tuple[str, str, str], tuple[int, bool]],
) -> dict[tuple[str, str, str], tuple[int, dict[str, str]]]:
    """The stored order of each row that has one, with its compared values as text."""
    by_pk = {issuer.pk: issuer.issuer_id for issuer in issuers.values()}
    wanted = {r.key for r in registrations}
    found: dict[tuple[str, str, str], tuple[int, dict[str, str]]] = {}

    def values(issuer_request_id, input_file_name, due_date) -> dict[str, str]:
        return {
            "issuer_request_id": issuer_request_id or "",
            "input_file_name": input_file_name or "",
            "due_date": due_date.isoformat() if due_date else "",
        }

    columns = ("id", "issuer_id", "card_id", "operation_id")
    compared = ("issuer_request_id", "input_file_name", "due_date")
    for start in range(0, len(registrations), CHUNK_ROWS):
        chunk = registrations[start : start + CHUNK_ROWS]
        cards: dict[int, set[str]] = defaultdict(set)
        for r in chunk:
            cards[issuers[r.issuer_id].pk].add(r.card_id)
        condition = Q()
        for issuer_pk, card_ids in cards.items():
            condition |= Q(issuer_id=issuer_pk, card_id__in=sorted(card_ids))
        for row in CardOrder.objects.filter(condition).values_list(*columns, *compared):
            order_id, issuer_pk, card_id, operation_id = row[:4]
            key = (by_pk[issuer_pk], card_id, operation_id)
            if key in wanted:
                found[key] = (order_id, values(*row[4:]))
    # Rows without operation_id that are an order D1 told about (found by card).
    others = {order_id: key for key, (order_id, _) in known.items()}
    for row in CardOrder.objects.filter(pk__in=sorted(others)).values_list("id", *compared):
        found[others[row[0]]] = (row[0], values(*row[1:]))
    return found


def orders_of_cards_without_operation(
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
        rank = (start or NO_TIME, order_id)
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
