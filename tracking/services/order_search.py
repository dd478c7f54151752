"""Finding card orders the way staff ask: by one of D1's ids exactly, or by part of a file name.

An id (card id, operation id, issuer request id, tracking number) is matched with equality, so
each lookup is one btree index probe; only when no id matches does the search fall back to a
substring match on the input file name (a trigram index on PostgreSQL).
"""

from __future__ import annotations

from enum import StrEnum

from django.db.models import Q, QuerySet

from tracking.models import CardOrder

ID_FIELDS = ("card_id", "operation_id", "issuer_request_id", "tracking_number")


class SearchPath(StrEnum):
    EXACT_ID = "exact_id"
    FILE_NAME = "file_name"
    NONE = "none"


def exact_id_q(term: str, id_fields: tuple[str, ...] = ID_FIELDS) -> Q:
    condition = Q()
    for name in id_fields:
        condition |= Q(**{name: term})
    return condition


def looks_like_id(term: str) -> bool:
    """D1 ids and tracking numbers are single tokens; a phrase can only be a file name part."""
    return bool(term) and not any(ch.isspace() for ch in term)


def orders_search(
    *,
    queryset: QuerySet[CardOrder],
    term: str,
    has_exact_match: bool | None = None,
    id_fields: tuple[str, ...] = ID_FIELDS,
) -> tuple[QuerySet[CardOrder], SearchPath]:
    """Narrow `queryset` to the orders `term` designates, and say which path found them.

    Probes the indexes of `id_fields` once (unless the caller already knows,
    `has_exact_match`) and returns a lazy queryset.
    """
    term = term.strip()
    if not term:
        return queryset, SearchPath.NONE
    if looks_like_id(term):
        exact = queryset.filter(exact_id_q(term, id_fields))
        if has_exact_match is None:
            has_exact_match = exact.exists()
        if has_exact_match:
            return exact, SearchPath.EXACT_ID
    return queryset.filter(input_file_name__icontains=term), SearchPath.FILE_NAME


def order_ids_for_exact_match(
    *, queryset: QuerySet[CardOrder], term: str, id_fields: tuple[str, ...] = ID_FIELDS
) -> list[int]:
    """Up to two primary keys of orders whose id equals `term`: one means "open it"."""
    term = term.strip()
    if not looks_like_id(term):
        return []
    return list(queryset.filter(exact_id_q(term, id_fields)).values_list("pk", flat=True)[:2])
