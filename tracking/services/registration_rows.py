"""Checking registration rows: each row the issuer sends (API body, bulk list item or CSV line)
becomes a `Registration`, or every field that is wrong is named, whatever the row holds (NUL,
lone surrogates, nesting, numbers); and the issuers a user may register orders for.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tracking.domain.validation import nested_too_deep
from tracking.models import ISSUER_ID_PATTERN as ISSUER_ID_REGEX
from tracking.models import Issuer
from tracking.services.issuer_grants import active_issuers_granted

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
ISSUER_ID_PATTERN = re.compile(ISSUER_ID_REGEX)
CARD_ID_MAX = 48
OPERATION_ID_MAX = 64
ISSUER_ID_LENGTH = 10
TEXT_MAX = 255
# Due dates are ISO 8601 calendar dates (YYYY-MM-DD) within these years: 9999-12-31 is a
# placeholder, not a date a card is due.
DUE_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DUE_DATE_MIN = dt.date(2000, 1, 1)
DUE_DATE_MAX = dt.date(2100, 12, 31)
FIELDS = (
    "issuer_id",
    "card_id",
    "operation_id",
    "issuer_request_id",
    "input_file_name",
    "due_date",
)


@dataclass(frozen=True)
class Registration:
    """One order the issuer placed, as it registers it."""

    issuer_id: str
    card_id: str
    operation_id: str = ""
    issuer_request_id: str = ""
    input_file_name: str = ""
    due_date: dt.date | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.issuer_id, self.card_id, self.operation_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "operation_id_given": bool(self.operation_id),
            "issuer_request_id": self.issuer_request_id,
            "input_file_name": self.input_file_name,
            "due_date": self.due_date.isoformat() if self.due_date else "",
        }

    def compared(self) -> dict[str, str]:
        """The issuer's own values as text, by field ("" where it gave none)."""
        return {
            "issuer_request_id": self.issuer_request_id,
            "input_file_name": self.input_file_name,
            "due_date": self.due_date.isoformat() if self.due_date else "",
        }


def shown(value: Any, limit: int = 60) -> str:
    """`value` as safe, short text for a message: NUL and lone surrogates escaped, cut."""
    text = value if isinstance(value, str) else repr(value)
    text = text[: limit * 2]
    text = "".join(
        f"\\u{ord(char):04x}" if char == "\x00" or "\ud800" <= char <= "\udfff" else char
        for char in text
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unstorable_reason(value: str) -> str:
    """Why a text cannot be stored in any column ("" when it can)."""
    if nested_too_deep(value):
        return "Nested too deeply: must be a string."
    if "\x00" in value:
        return "Holds a NUL character, which cannot be stored."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Holds an unpaired surrogate or bytes that are not UTF-8; cannot be stored."
    return ""


def due_date_parse(value: Any) -> tuple[dt.date | None, str]:
    """An ISO 8601 calendar date (YYYY-MM-DD) within DUE_DATE_MIN..MAX, or the reason not."""
    expected = "Must be a date, YYYY-MM-DD."
    if not isinstance(value, str):
        return None, expected  # 20260305 as a number is no date
    value = value.strip()
    if not DUE_DATE_PATTERN.fullmatch(value):
        return None, expected  # week dates (2026-W10-4), ordinal dates, times, 20260305
    try:
        date = dt.date.fromisoformat(value)
    except ValueError:
        return None, "Not a calendar date."
    if not DUE_DATE_MIN <= date <= DUE_DATE_MAX:
        return None, f"Must lie between {DUE_DATE_MIN.year} and {DUE_DATE_MAX.year}."
    return date, ""


def registration_check(
    data: Any, *, issuers: Mapping[str, Issuer] | None = None
) -> tuple[Registration | None, dict[str, str]]:
    """A valid Registration, or None and the problem of each field by name.

    `issuers` (issuer_id → active Issuer) lets a caller check many rows with one query; without
    it the issuer is looked up here. Unknown fields are refused too: a misspelt optional field
    would otherwise be lost without a word. Never raises, whatever `data` holds.
    """
    if not isinstance(data, dict):
        return None, {"non_field_errors": "each order must be a JSON object"}
    errors: dict[str, str] = {}
    unknown = sorted((shown(name, 40) for name in set(data) - set(FIELDS)), key=str)
    if unknown:
        listed = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        errors["non_field_errors"] = f"unknown field(s): {listed}"

    def text(name: str, *, required: bool, max_len: int, pattern: re.Pattern | None = None) -> str:
        value = data.get(name)
        if value is None or value == "":
            if required:
                errors[name] = "This field is required."
            return ""
        if not isinstance(value, str) or nested_too_deep(value):
            errors[name] = "Must be a string."
            return ""
        if problem := unstorable_reason(value):
            errors[name] = problem
            return ""
        value = value.strip()
        if len(value) > max_len:
            errors[name] = f"Must be at most {max_len} characters."
        elif pattern is not None and not pattern.fullmatch(value):
            errors[name] = "Only letters, digits, '-' and '_' are allowed."
        return value

    issuer_id = text("issuer_id", required=True, max_len=ISSUER_ID_LENGTH)
    if issuer_id and "issuer_id" not in errors and not ISSUER_ID_PATTERN.fullmatch(issuer_id):
        errors["issuer_id"] = f"Must be exactly {ISSUER_ID_LENGTH} letters or digits."
    card_id = text("card_id", required=True, max_len=CARD_ID_MAX, pattern=ID_PATTERN)
    operation_id = text(
        "operation_id", required=False, max_len=OPERATION_ID_MAX, pattern=ID_PATTERN
    )
    request_id = text("issuer_request_id", required=False, max_len=TEXT_MAX)
    file_name = text("input_file_name", required=False, max_len=TEXT_MAX)
    due_date = None
    due_value = data.get("due_date")
    if due_value not in (None, ""):
        if isinstance(due_value, str) and (problem := unstorable_reason(due_value)):
            errors["due_date"] = problem
        else:
            due_date, problem = due_date_parse(due_value)
            if problem:
                errors["due_date"] = problem
    if issuer_id and "issuer_id" not in errors:
        known = (
            issuers
            if issuers is not None
            else {
                i.issuer_id: i for i in Issuer.objects.filter(issuer_id=issuer_id, is_active=True)
            }
        )
        if issuer_id not in known:
            errors["issuer_id"] = f"Unknown or inactive issuer {issuer_id}."
    if errors:
        return None, errors
    return (
        Registration(
            issuer_id=issuer_id,
            card_id=card_id,
            operation_id=operation_id,
            issuer_request_id=request_id,
            input_file_name=file_name,
            due_date=due_date,
        ),
        {},
    )


def active_issuers(issuer_ids: Iterable[Any]) -> dict[str, Issuer]:
    """The active issuers among `issuer_ids` (those of D1's format), by id, in one query."""
    wanted = {
        i.strip()
        for i in issuer_ids
        if isinstance(i, str) and ISSUER_ID_PATTERN.fullmatch(i.strip())
    }
    return {i.issuer_id: i for i in Issuer.objects.filter(issuer_id__in=wanted, is_active=True)}


def registrable_issuers(
    *, user: Any, issuer_ids: Iterable[Any], token: Any = None
) -> dict[str, Issuer]:
    """The active issuers among `issuer_ids` that `user` (through `token`, a read-API token,
    if given) may register orders for, by id.

    Every registration path (the API, the upload's preview and its confirmation) takes its
    issuers from here: the user's issuer grant narrows them (`tracking.services.issuer_grants`);
    an issuer left out is refused as unknown, the same words as one that does not exist.
    """
    return active_issuers_granted(user, issuer_ids, token=token)
