"""An order file staff upload to register orders: decoded, each row checked, conflicts found.

UTF-8, Shift_JIS (Excel's CSV) or UTF-16; a header line, then one order per line. Nothing is
registered here: `issuer_side.register_view` shows the result and registers the valid rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from tracking.services.registration_conflicts import registrations_conflicting
from tracking.services.registration_rows import (
    FIELDS,
    registrable_issuers,
    registration_check,
    shown,
)

# D1's camelCase names are accepted as CSV headers too.
HEADER_ALIASES = {
    "issuerid": "issuer_id",
    "cardid": "card_id",
    "operationid": "operation_id",
    "issuerrequestid": "issuer_request_id",
    "inputfilename": "input_file_name",
    "duedate": "due_date",
}


@dataclass
class ParsedFile:
    """A read order file: the rows to register and those refused, each with its line number.

    `conflicts` are valid rows that disagree with a stored order (registering keeps them as
    conflicts); `notes` say what was read how (the encoding, the columns ignored).
    """

    valid: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    encoding: str = ""
    error: str = ""


# Byte order marks first; then UTF-8 (strict), then Excel's Japanese CSV (CP932, a superset of
# Shift_JIS). UTF-8 strict almost never accepts CP932 text by accident, so the order is safe.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
_SLASH_DATE = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$")


def order_file_decode(content: bytes) -> tuple[str, str]:
    """The file's text and the name of its encoding; ValueError when none of them reads it."""
    for bom, codec, name in _BOMS:
        if content.startswith(bom):
            try:
                return content.decode(codec), name
            except UnicodeDecodeError as exc:
                raise ValueError(
                    _("The file starts as %(name)s but is not %(name)s text.") % {"name": name}
                ) from exc
    for codec, name in (("utf-8", "UTF-8"), ("cp932", "Shift_JIS (CP932)")):
        try:
            return content.decode(codec), name
        except UnicodeDecodeError:
            continue
    raise ValueError(_("The file is neither UTF-8, Shift_JIS (CP932) nor UTF-16 text."))


def _due_date_text(value: str) -> str:
    """A spreadsheet's YYYY/MM/DD as YYYY-MM-DD; anything else as it is (checked later)."""
    match = _SLASH_DATE.fullmatch(value)
    if match is None:
        return value
    year, month, day = match.groups()
    return f"{year}-{int(month):02d}-{int(day):02d}"


def order_file_parse(content: bytes, *, user: Any, default_issuer: str = "") -> ParsedFile:
    """Read an order file (CSV) and check each row as the API would; never raises.

    A problem of one row (a NUL, a field too long, a bad date) refuses that row; only what makes
    the file unreadable (its encoding, a field over the CSV reader's limit, a bare CR outside
    quotes) refuses the file, naming the line.
    """
    parsed = ParsedFile()
    try:
        text, parsed.encoding = order_file_decode(content)
    except ValueError as exc:
        parsed.error = str(exc)
        return parsed
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        parsed.error = _("The file is empty.")
        return parsed
    except csv.Error as exc:
        parsed.error = _("Line 1 cannot be read: %(reason)s.") % {"reason": exc}
        return parsed
    columns = [HEADER_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    if "card_id" not in columns:
        parsed.error = _("The file has no card_id column.")
        return parsed
    ignored = [
        shown(h, 40)
        for h in header
        if HEADER_ALIASES.get(h.strip().lower(), h.strip().lower()) not in FIELDS
    ]
    parsed.notes.append(_("Read as %(encoding)s.") % {"encoding": parsed.encoding})
    if ignored:
        parsed.notes.append(_("Column(s) ignored: %(columns)s.") % {"columns": ", ".join(ignored)})
    rows = []
    line_number = 1
    try:
        for values in reader:
            line_number = reader.line_num
            if not any(v.strip() for v in values):
                continue
            row = {
                name: value.strip()
                for name, value in zip(columns, values, strict=False)
                if name in FIELDS
            }
            if len(values) > len(columns):
                row["__extra__"] = values[len(columns) :]
            if not row.get("issuer_id") and default_issuer:
                row["issuer_id"] = default_issuer
            if row.get("due_date"):
                row["due_date"] = _due_date_text(row["due_date"])
            rows.append((line_number, row))
            if len(rows) > settings.REGISTRATION_BULK_MAX:
                parsed.error = _("At most %(limit)s orders per file; split the file.") % {
                    "limit": settings.REGISTRATION_BULK_MAX
                }
                return parsed
    except csv.Error as exc:
        # The reader's own limits (a field over csv.field_size_limit, a line break outside
        # quotes): the rest of the file cannot be read reliably, so nothing of it is taken.
        parsed.error = _(
            "Line %(line)s cannot be read (%(reason)s); nothing was registered. A field may be "
            "too long, or hold a line break (CR) outside quotes."
        ) % {"line": reader.line_num or line_number + 1, "reason": exc}
        return parsed
    issuers = registrable_issuers(user=user, issuer_ids=(r.get("issuer_id") for _line, r in rows))
    checked = []
    for line_number, row in rows:
        extra = row.pop("__extra__", None)
        data = {k: v for k, v in row.items() if v != ""}
        registration, errors = registration_check(data, issuers=issuers)
        if extra:
            errors = {**errors, "non_field_errors": _("more values than columns")}
        if errors:
            parsed.refused.append(
                {
                    "line": line_number,
                    "row": {k: shown(v) for k, v in row.items()},
                    "errors": errors,
                    "fields": sorted(errors),
                }
            )
        else:
            parsed.valid.append({"line": line_number, **data})
            checked.append(registration)
    for index, clash in registrations_conflicting(checked).items():
        parsed.conflicts.append(
            {
                "line": parsed.valid[index]["line"],
                "card_id": checked[index].card_id,
                "fields": [
                    {"name": name, "stored": stored, "registered": given}
                    for name, (stored, given) in sorted(clash.items())
                ],
            }
        )
    return parsed
