"""Finding card orders the way staff and callers ask: an id exactly, or the part of one they have.

One box, tried in this order, the first that finds an order wins and is named on the list:

1. An id (card id, operation id, issuer request id, tracking number) equal to the term, ignoring
   case (staff type "jd0146..." for "JD0146..."): one probe of an `UPPER(column)` index each.
2. The end of a tracking number (4 characters or more): what a caller reads out from a label.
3. Any part of a card id, then of an issuer request id (3 characters or more).
4. Any part of an input file name (a phrase with spaces can only be this).

Parts are matched with `UPPER(col) LIKE UPPER('%term%')`; on PostgreSQL each column has a
trigram GIN index on `UPPER(col)` (migrations 0005 and 0015) that serves both "contains" and
"ends with". SQLite runs the same queries without the indexes. Callers narrow `id_fields` for
users who may not search personal fields (the tracking number): its end is then not tried either.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from tracking.models import CardOrder

ID_FIELDS = ("card_id", "operation_id", "issuer_request_id", "tracking_number")
# What a caller reads out: the last digits of the label's number; fewer would match too much.
TRACKING_TAIL_MIN = 4
# Trigram indexes need three characters to narrow anything.
PART_MIN = 3


class SearchPath(StrEnum):
    EXACT_ID = "exact_id"
    TRACKING_END = "tracking_end"
    CARD_ID_PART = "card_id_part"
    REQUEST_ID_PART = "request_id_part"
    FILE_NAME = "file_name"
    NONE = "none"


# What the list says above its rows, per path: "<what>: N orders".
MATCHED: dict[SearchPath, object] = {
    SearchPath.EXACT_ID: _("Matched an id exactly"),
    SearchPath.TRACKING_END: _("Matched the end of a tracking number"),
    SearchPath.CARD_ID_PART: _("Matched part of a card id"),
    SearchPath.REQUEST_ID_PART: _("Matched part of an issuer request id"),
    SearchPath.FILE_NAME: _("Matched part of an input file name"),
}


@dataclass(frozen=True)
class _PartialPath:
    path: SearchPath
    field: str
    lookup: str
    min_length: int


PARTIAL_PATHS = (
    _PartialPath(SearchPath.TRACKING_END, "tracking_number", "iendswith", TRACKING_TAIL_MIN),
    _PartialPath(SearchPath.CARD_ID_PART, "card_id", "icontains", PART_MIN),
    _PartialPath(SearchPath.REQUEST_ID_PART, "issuer_request_id", "icontains", PART_MIN),
)


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

    Probes the paths in order (an `exists()` each; the exact ids not at all when the caller
    already knows, `has_exact_match`) and returns a lazy queryset. Writes nothing.
    """
    term = term.strip()
    if not term:
        return queryset, SearchPath.NONE
    if looks_like_id(term):
        if has_exact_match is not False:
            exact = _id_match(queryset, term, id_fields)
            if has_exact_match or exact.exists():
                return exact, SearchPath.EXACT_ID
        for partial in PARTIAL_PATHS:
            if partial.field not in id_fields or len(term) < partial.min_length:
                continue
            found = queryset.filter(**{f"{partial.field}__{partial.lookup}": term})
            if found.exists():
                return found, partial.path
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
