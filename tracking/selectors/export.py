"""The export of card orders as CSV or .xlsx, in constant memory whatever the size.

Both carry the same columns: headers in the reader's language, times in the reader's zone (the
current time zone, named in the header), and when the card shipped and was delivered.

CSV: UTF-8 with a byte-order mark (Excel reads UTF-8 only with it), streamed line by line.
Values a spreadsheet would run as a formula (=, +, -, @ at the start) get an apostrophe: the
text partly comes from outside. An id that Excel would turn into a number (`0001234567` loses
its zeros, a twelve-digit tracking number becomes `1.23457E+11`) is written `="0001234567"`:
Excel, LibreOffice and Google Sheets all evaluate that to the exact text when they open the
file. An apostrophe would show up literally in the cell when a CSV is opened, and a leading
tab is kept as part of the value (lookups then fail), so the formula is the form that works.

.xlsx: xlsxwriter's `constant_memory` mode writes each row to a temporary file as soon as the
next one starts, so memory stays flat; the finished workbook is streamed back in blocks and the
file removed. Ids are string cells, times are date-time cells in the reader's zone.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import tempfile
from collections.abc import Collection, Iterator

import xlsxwriter
from django.db.models import Case, OuterRef, QuerySet, Subquery, When
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from tracking.domain import carrier_status, labels
from tracking.domain.carriers import carrier_name
from tracking.domain.labels import humanize_duration
from tracking.domain.masking import personal_mask
from tracking.domain.stage_limits import stage_threshold
from tracking.domain.statuses import DELIVERED_SHIPMENT_CLASSES, SHIPPED_STATUS
from tracking.domain.times import parse_time
from tracking.models import CardOrder, OperationEvent

# Spreadsheet tools read the file as UTF-8 only with a byte-order mark.
BOM = "\ufeff"

# (header, value path) in the order the file shows them; headers in staff's words.
ORDER_COLUMNS: tuple[tuple[str, str], ...] = (
    (gettext_noop("Issuer"), "issuer__issuer_id"),
    (gettext_noop("Card id"), "card_id"),
    (gettext_noop("Operation id"), "operation_id"),
    (gettext_noop("Operation"), "operation"),
    (gettext_noop("Operation status"), "operation_status"),
    (gettext_noop("Production status"), "production_status"),
    (gettext_noop("Production status (code)"), "production_status"),
    (gettext_noop("In this stage since ({zone})"), "stage_entered_at"),
    (gettext_noop("Carrier"), "carrier"),
    (gettext_noop("Tracking number"), "tracking_number"),
    (gettext_noop("Tracking link"), "tracking_url"),
    (gettext_noop("Carrier status"), "shipment_status"),
    (gettext_noop("Issuer request id"), "issuer_request_id"),
    (gettext_noop("Input file"), "input_file_name"),
    (gettext_noop("Production site"), "production_site"),
    (gettext_noop("Due date (D1's expected completion)"), "due_date"),
    (gettext_noop("D1 error code"), "error_code"),
    (gettext_noop("D1 error"), "error"),
    (gettext_noop("Reason"), "reason"),
    (gettext_noop("Will ask D1"), "needs_reconcile"),
    (gettext_noop("Why ask D1"), "reconcile_reason"),
    (gettext_noop("Conflict"), "has_conflict"),
    (gettext_noop("Unknown codes"), "unknown_codes"),
    (gettext_noop("First seen ({zone})"), "first_event_at"),
    (gettext_noop("Last message ({zone})"), "last_event_at"),
    (gettext_noop("Last update ({zone})"), "updated_at"),
    (gettext_noop("Shipped on ({zone})"), "shipped_on"),
    (gettext_noop("Delivered on ({zone})"), "delivered_on"),
)
# Extra columns of the Stuck export: how long, against which limit, over by how much.
STUCK_COLUMNS = (
    gettext_noop("Time in stage"),
    gettext_noop("Stage time limit"),
    gettext_noop("Over the limit by"),
)
# D1's ids and the carrier's number: text, never a number, in every spreadsheet.
ID_PATHS = frozenset({"card_id", "operation_id", "issuer_request_id", "tracking_number"})
# Times the export computes (annotations), not columns of the order.
_COMPUTED_TIMES = frozenset({"shipped_on", "delivered_on"})
# What Excel would read as a number (or a date) and so rewrite: digits, signs, a decimal point,
# an exponent, date-like separators.
_NUMBER_LIKE = re.compile(r"^[+-]?[\d.,/:\s]*\d[\d.,/:\s]*(?:[eE][+-]?\d+)?$")
# Columns whose code is written as its plain-language label (tracking.domain.labels).
_LABELLED = {
    "Operation": "operation",
    "Operation status": "operation_status",
    "Production status": "production_status",
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
        return gettext("yes") if value else gettext("no")
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
    """A code as staff read it: its label (unknown codes kept), a carrier's name, the class of
    a carrier's status."""
    if header == "Carrier":
        return carrier_name(value) if value else ""
    if header == "Carrier status":
        # As the order page shows it: the class in staff's words, the carrier's own word beside.
        klass = carrier_status.carrier_status_class(value)
        return f"{carrier_status.class_label(klass)} ({value})" if klass else ""
    kind = _LABELLED.get(header)
    if kind and value:
        return labels.label_text(kind, value)
    return value


def export_queryset(queryset: QuerySet[CardOrder]) -> QuerySet[CardOrder]:
    """`queryset` with the times the export computes: shipped on, delivered on.

    Shipped on is the first CARD_SHIPPED (the order page's), delivered on the first delivered
    carrier update, asked only of delivered orders (the `event_order_timeline` index).
    """
    delivered = (
        # The first event with the carrier's own delivered word (its class is the order's).
        OperationEvent.objects.filter(
            order=OuterRef("pk"), shipment_status=OuterRef("shipment_status")
        )
        .order_by("first_received_at")
        .values("first_received_at")[:1]
    )
    return queryset.annotate(
        shipped_on=KeyTextTransform(SHIPPED_STATUS, "stage_first_seen"),
        delivered_on=Case(
            When(
                shipment_class__in=sorted(DELIVERED_SHIPMENT_CLASSES),
                then=Subquery(delivered),
            ),
            default=None,
        ),
    )


def _headers(*, stuck: bool, now: dt.datetime) -> list[str]:
    zone = timezone.localtime(now).strftime("%Z") or str(timezone.get_current_timezone())
    headers = [gettext(header).format(zone=zone) for header, _ in ORDER_COLUMNS]
    return [*headers, *(gettext(header) for header in STUCK_COLUMNS if stuck)]


def _export_rows(
    *,
    queryset: QuerySet[CardOrder],
    chunk_size: int,
    masked: Collection[str],
    stuck: bool,
    now: dt.datetime,
) -> Iterator[list]:
    """One list of presented values per order: labels for codes, masks, aware datetimes."""
    hidden = [path in masked for _, path in ORDER_COLUMNS]
    paths = [path for _, path in ORDER_COLUMNS]
    rows = export_queryset(queryset).values_list(*paths).iterator(chunk_size=chunk_size)
    entered_at = paths.index("stage_entered_at")
    status_at = paths.index("production_status")
    for row in rows:
        values = []
        for value, hide, (header, path) in zip(row, hidden, ORDER_COLUMNS, strict=True):
            if hide:
                values.append(personal_mask(value))
            elif path in _COMPUTED_TIMES:
                values.append(value if isinstance(value, dt.datetime) else parse_time(value))
            else:
                values.append(_presented(header, value))
        if stuck:
            values.extend(_stuck_cells(row[status_at], row[entered_at], now=now))
        yield values


def _csv_id(value) -> str:
    """An id as Excel keeps it: `="0001234567"` when Excel would make it a number."""
    text = "" if value is None else str(value)
    if text and _NUMBER_LIKE.match(text):
        return '="{}"'.format(text.replace('"', '""'))
    return _cell(text)


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
    writer = csv.writer(_Line())
    yield BOM + writer.writerow(_headers(stuck=stuck, now=now))
    is_id = [path in ID_PATHS and path not in masked for _, path in ORDER_COLUMNS]
    for values in _export_rows(
        queryset=queryset, chunk_size=chunk_size, masked=masked, stuck=stuck, now=now
    ):
        cells = [
            _csv_id(value) if index < len(is_id) and is_id[index] else _cell(value)
            for index, value in enumerate(values)
        ]
        yield writer.writerow(cells)


XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_BLOCK = 64 * 1024
# Excel's limits: a sheet holds 1,048,576 rows; a cell 32,767 characters.
XLSX_MAX_ROWS = 1_048_576
XLSX_MAX_CELL = 32_767


def orders_xlsx_file(
    *,
    queryset: QuerySet[CardOrder],
    chunk_size: int,
    masked: Collection[str] = (),
    stuck: bool = False,
    now: dt.datetime | None = None,
) -> tuple[str, int]:
    """Write the export as an .xlsx workbook to a temporary file; return its path and rows.

    Same columns and rows as the CSV. Ids and text are string cells; times are date-time cells
    in the current time zone; rows beyond one sheet continue on the next sheet. The caller
    removes the file (`xlsx_blocks` does once streamed).
    """
    now = now or timezone.now()
    handle, file_path = tempfile.mkstemp(prefix="card-orders-", suffix=".xlsx")
    os.close(handle)
    workbook = xlsxwriter.Workbook(
        file_path,
        {
            "constant_memory": True,
            "tmpdir": tempfile.gettempdir(),
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    try:
        headers = _headers(stuck=stuck, now=now)
        bold = workbook.add_format({"bold": True})
        moment = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        day = workbook.add_format({"num_format": "yyyy-mm-dd"})
        sheet = None
        sheet_row = XLSX_MAX_ROWS
        rows = 0
        for values in _export_rows(
            queryset=queryset, chunk_size=chunk_size, masked=masked, stuck=stuck, now=now
        ):
            if sheet_row >= XLSX_MAX_ROWS:
                sheet = workbook.add_worksheet()
                sheet.write_row(0, 0, headers, bold)
                sheet.freeze_panes(1, 0)
                sheet_row = 1
            for column, value in enumerate(values):
                _xlsx_write(sheet, sheet_row, column, value, moment=moment, day=day)
            sheet_row += 1
            rows += 1
        if sheet is None:
            workbook.add_worksheet().write_row(0, 0, headers, bold)
        workbook.close()
    except BaseException:
        workbook.fileclosed = True
        os.unlink(file_path)
        raise
    return file_path, rows


def _xlsx_write(sheet, row: int, column: int, value, *, moment, day) -> None:
    if value is None or value == "":
        return
    if isinstance(value, bool):
        sheet.write_string(row, column, gettext("yes") if value else gettext("no"))
    elif isinstance(value, dt.datetime):
        # Excel has no zones: the reader's local time, the zone named in the header.
        local = timezone.localtime(value).replace(tzinfo=None)
        sheet.write_datetime(row, column, local, moment)
    elif isinstance(value, dt.date):
        sheet.write_datetime(row, column, dt.datetime.combine(value, dt.time()), day)
    else:
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        sheet.write_string(row, column, str(value)[:XLSX_MAX_CELL])


def xlsx_blocks(file_path: str) -> Iterator[bytes]:
    """The workbook's bytes in blocks, then the file removed (also when the reader goes away)."""
    try:
        with open(file_path, "rb") as workbook:
            while block := workbook.read(XLSX_BLOCK):
                yield block
    finally:
        os.unlink(file_path)


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
