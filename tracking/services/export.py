"""CSV export of card orders, streamed row by row so memory stays flat whatever the size.

Values that a spreadsheet would run as a formula (=, +, -, @ at the start) are prefixed with
an apostrophe: the file is opened by staff, and the text in it partly comes from outside.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator

from django.db.models import QuerySet

from tracking.data_care import personal_mask
from tracking.models import CardOrder

# (header, value path) in the order the file shows them.
ORDER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("issuer_id", "issuer__issuer_id"),
    ("card_id", "card_id"),
    ("operation_id", "operation_id"),
    ("operation", "operation"),
    ("operation_status", "operation_status"),
    ("production_status", "production_status"),
    ("stage_entered_at", "stage_entered_at"),
    ("carrier", "carrier"),
    ("tracking_number", "tracking_number"),
    ("tracking_url", "tracking_url"),
    ("shipment_status", "shipment_status"),
    ("issuer_request_id", "issuer_request_id"),
    ("input_file_name", "input_file_name"),
    ("production_site", "production_site"),
    ("due_date", "due_date"),
    ("error_code", "error_code"),
    ("error", "error"),
    ("reason", "reason"),
    ("needs_reconcile", "needs_reconcile"),
    ("reconcile_reason", "reconcile_reason"),
    ("has_conflict", "has_conflict"),
    ("unknown_codes", "unknown_codes"),
    ("first_event_at", "first_event_at"),
    ("last_event_at", "last_event_at"),
    ("updated_at", "updated_at"),
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """A file-like object whose write() hands the line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_PREFIXES) else text


def orders_csv_lines(
    *, queryset: QuerySet[CardOrder], chunk_size: int, masked: Collection[str] = ()
) -> Iterator[str]:
    """The header and one CSV line per order of `queryset`, read `chunk_size` rows at a time.

    Columns named in `masked` (personal fields the reader may not see) carry a mask instead of
    their value. On PostgreSQL the rows come through a server-side cursor; nothing is held
    beyond a chunk.
    """
    writer = csv.writer(_Line())
    yield writer.writerow([header for header, _ in ORDER_COLUMNS])
    hidden = [path in masked for _, path in ORDER_COLUMNS]
    rows = queryset.values_list(*[path for _, path in ORDER_COLUMNS]).iterator(
        chunk_size=chunk_size
    )
    for row in rows:
        yield writer.writerow(
            [
                _cell(personal_mask(value) if hide else value)
                for value, hide in zip(row, hidden, strict=True)
            ]
        )
