"""CSV export of card orders, streamed row by row so memory stays flat whatever the size.

Values that a spreadsheet would run as a formula (=, +, -, @ at the start) are prefixed with
an apostrophe: the file is opened by staff, and the text in it partly comes from outside.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Collection, Iterable, Iterator

from django.db.models import QuerySet
from django.utils import timezone

from tracking import labels
from tracking.carriers import carrier_name
from tracking.data_care import personal_mask
from tracking.labels import humanize_duration
from tracking.models import CardOrder
from tracking.services.audit import Actor, audit_actor
from tracking.services.order_queues import stage_threshold

# Spreadsheet tools read the file as UTF-8 only with a byte-order mark.
BOM = "\ufeff"

# (header, value path) in the order the file shows them; headers in staff's words.
ORDER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Issuer", "issuer__issuer_id"),
    ("Card id", "card_id"),
    ("Operation id", "operation_id"),
    ("Operation", "operation"),
    ("Operation status", "operation_status"),
    ("Production status", "production_status"),
    ("Production status (code)", "production_status"),
    ("In this stage since ({zone})", "stage_entered_at"),
    ("Carrier", "carrier"),
    ("Tracking number", "tracking_number"),
    ("Tracking link", "tracking_url"),
    ("Carrier status", "shipment_status"),
    ("Issuer request id", "issuer_request_id"),
    ("Input file", "input_file_name"),
    ("Production site", "production_site"),
    ("Due date (D1's expected completion)", "due_date"),
    ("D1 error code", "error_code"),
    ("D1 error", "error"),
    ("Reason", "reason"),
    ("Will ask D1", "needs_reconcile"),
    ("Why ask D1", "reconcile_reason"),
    ("Conflict", "has_conflict"),
    ("Unknown codes", "unknown_codes"),
    ("First seen ({zone})", "first_event_at"),
    ("Last message ({zone})", "last_event_at"),
    ("Last update ({zone})", "updated_at"),
)
# Extra columns of the Stuck export: how long, against which limit, over by how much.
STUCK_COLUMNS = ("Time in stage", "Stage time limit", "Over the limit by")
# Columns whose code is written as its plain-language label (tracking.labels).
_LABELLED = {
    "Operation": "operation",
    "Operation status": "operation_status",
    "Production status": "production_status",
    "Carrier status": "shipment_status",
    "Why ask D1": "reconcile_reason",
}
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
    if isinstance(value, dt.datetime):
        # Spreadsheets read this as a date-time; the zone is in the column's header.
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_PREFIXES) else text


def _presented(header: str, value):
    """A code as staff read it: its label (unknown codes kept), a carrier's name."""
    if header == "Carrier":
        return carrier_name(value) if value else ""
    kind = _LABELLED.get(header)
    if kind and value:
        return labels.label_text(kind, value)
    return value


def orders_csv_lines(
    *,
    queryset: QuerySet[CardOrder],
    chunk_size: int,
    masked: Collection[str] = (),
    stuck: bool = False,
    now: dt.datetime | None = None,
) -> Iterator[str]:
    """A BOM, the header and one CSV line per order of `queryset`, `chunk_size` rows at a time.

    Columns named in `masked` (personal fields the reader may not see) carry a mask instead of
    their value. `stuck` adds the time in stage, the stage's limit and the excess. On
    PostgreSQL the rows come through a server-side cursor; nothing is held beyond a chunk.
    """
    now = now or timezone.now()
    zone = timezone.localtime(now).strftime("%Z") or str(timezone.get_current_timezone())
    writer = csv.writer(_Line())
    headers = [header.format(zone=zone) for header, _ in ORDER_COLUMNS]
    yield BOM + writer.writerow([*headers, *(STUCK_COLUMNS if stuck else ())])
    hidden = [path in masked for _, path in ORDER_COLUMNS]
    paths = [path for _, path in ORDER_COLUMNS]
    rows = queryset.values_list(*paths).iterator(chunk_size=chunk_size)
    entered_at = paths.index("stage_entered_at")
    status_at = paths.index("production_status")
    for row in rows:
        cells = [
            _cell(personal_mask(value) if hide else _presented(header, value))
            for value, hide, (header, _) in zip(row, hidden, ORDER_COLUMNS, strict=True)
        ]
        if stuck:
            cells.extend(_stuck_cells(row[status_at], row[entered_at], now=now))
        yield writer.writerow(cells)


def _stuck_cells(status: str, entered: dt.datetime | None, *, now: dt.datetime) -> list[str]:
    if entered is None:
        return ["", "", ""]
    spent = now - entered
    limit = stage_threshold(status)
    over = spent - limit
    return [
        humanize_duration(spent),
        humanize_duration(limit),
        humanize_duration(over) if over.total_seconds() > 0 else "",
    ]


def orders_csv_audited(lines: Iterable[str], *, actor: Actor, filters: dict) -> Iterator[str]:
    """Pass the CSV lines through, then audit who exported, with which filters, how many rows.

    Written when the stream ends, finished or cut off (`complete` says which), so the row
    count is the one the reader got.
    """
    rows = -1  # the header line is not a row
    complete = False
    try:
        for line in lines:
            rows += 1
            yield line
        complete = True
    finally:
        audit_actor(
            actor,
            action="order.export",
            targets=[None],
            details={"filters": filters, "rows": max(rows, 0), "complete": complete},
        )
