"""Finding card orders the way staff ask: by one of D1's ids exactly, or by part of a file name.

An id (card id, operation id, issuer request id, tracking number) is matched with equality,
ignoring case (staff type "jd0146..." for "JD0146..."), so each lookup is one probe of an
`UPPER(column)` index; only when no id matches does the search fall back to a substring match on
the input file name (a trigram index on PostgreSQL). Callers narrow `id_fields` for users who may
not search personal fields (the tracking number).
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


def exact_id_q(
    term: str, id_fields: tuple[str, ...] = ID_FIELDS, *, ignore_case: bool = False
) -> Q:
    """Any of `id_fields` equal to `term` (ignoring case if asked: UPPER(column) = UPPER(term))."""
    lookup = "iexact" if ignore_case else "exact"
    condition = Q()
    for name in id_fields:
        condition |= Q(**{f"{name}__{lookup}": term})
    return condition


def _id_match(
    queryset: QuerySet[CardOrder], term: str, id_fields: tuple[str, ...]
) -> QuerySet[CardOrder]:
    """Orders whose id is `term` exactly; failing that, in another case."""
    exact = queryset.filter(exact_id_q(term, id_fields))
    if exact.exists():
        return exact
    return queryset.filter(exact_id_q(term, id_fields, ignore_case=True))


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
        if has_exact_match is False:
            return queryset.filter(input_file_name__icontains=term), SearchPath.FILE_NAME
        exact = _id_match(queryset, term, id_fields)
        if has_exact_match or exact.exists():
            return exact, SearchPath.EXACT_ID
    return queryset.filter(input_file_name__icontains=term), SearchPath.FILE_NAME


def order_ids_for_exact_match(
    *, queryset: QuerySet[CardOrder], term: str, id_fields: tuple[str, ...] = ID_FIELDS
) -> list[int]:
    """Up to two primary keys of orders whose id equals `term`: one means "open it"."""
    term = term.strip()
    if not looks_like_id(term):
        return []
    found = list(queryset.filter(exact_id_q(term, id_fields)).values_list("pk", flat=True)[:2])
    if found:
        return found
    return list(
        queryset.filter(exact_id_q(term, id_fields, ignore_case=True)).values_list("pk", flat=True)[
            :2
        ]
    )
