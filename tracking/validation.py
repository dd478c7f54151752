"""Validation of D1 notification bodies and items against SPEC §1.4; returns reasons, never raises.

Only what D1 documents is enforced (required fields, the id patterns and lengths, ISO 8601 times,
object types). Generous caps on the other strings protect the database without refusing plausible
data. Unknown operations, statuses and extra fields are valid: D1 says new codes may appear.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from tracking.rules import TRACKED_OPERATIONS, parse_date, parse_time

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
ISSUER_ID_LENGTH = 10
OPERATION_ID_MAX = 64
CARD_ID_MAX = 48
CODE_MAX = 64  # operation, details.status, carrier, shipment status
SHORT_CODE_MAX = 32  # status, trackingType (the columns they are derived into)
TEXT_MAX = 255  # issuerRequestId, inputFileName, productionSite, errorCode, trackingNumber
LONG_TEXT_MAX = 2048  # error, reason, message, trackingUrl
MAX_JSON_DEPTH = 32


class EnvelopeError(Exception):
    """The body as a whole can never be valid: answered 400 and kept for staff."""

    def __init__(self, error_code: str, error: str) -> None:
        super().__init__(error)
        self.error_code = error_code
        self.error = error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999 parses as infinity, which no JSON column can store
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def parse_envelope(raw: bytes, *, max_operations: int) -> list[Any]:
    """The `operations` list of a body, or EnvelopeError saying why the body is refused."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvelopeError("PARSING_ERROR", "The body is not UTF-8 encoded.") from exc
    try:
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise EnvelopeError("PARSING_ERROR", "The body is nested too deeply.") from exc
    except ValueError as exc:
        raise EnvelopeError("PARSING_ERROR", f"The body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise EnvelopeError(
            "FIELD_INVALID_FORMAT", 'The body must be a JSON object {"operations": [...]}.'
        )
    if "operations" not in body:
        raise EnvelopeError("FIELD_MISSING", 'The body has no "operations" array.')
    operations = body["operations"]
    if not isinstance(operations, list):
        raise EnvelopeError("FIELD_INVALID_FORMAT", '"operations" must be an array.')
    if not operations:
        raise EnvelopeError("FIELD_INVALID_VALUE", '"operations" must not be empty.')
    if len(operations) > max_operations:
        raise EnvelopeError(
            "TOO_MANY_OPERATIONS",
            f'"operations" has {len(operations)} items; at most {max_operations} are accepted.',
        )
    _check_storable(body)
    return operations


def _check_storable(value: Any, level: int = 0) -> None:
    """Refuse what no database column can hold: deep nesting, NUL, unpaired surrogates."""
    if level > MAX_JSON_DEPTH:
        raise EnvelopeError("PARSING_ERROR", "The body is nested too deeply.")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_storable(item, level + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, level + 1)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise EnvelopeError("PARSING_ERROR", "The body contains a NUL character (\\u0000).")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EnvelopeError(
                "PARSING_ERROR", "The body contains an unpaired UTF-16 surrogate escape."
            ) from exc


@dataclass(frozen=True)
class ItemCheck:
    """An item's validation result: the error (empty when valid) and its ids when readable."""

    error: str
    card_id: str
    operation_id: str
    operation: str

    @property
    def is_valid(self) -> bool:
        return not self.error

    @property
    def is_tracked(self) -> bool:
        return self.operation in TRACKED_OPERATIONS


def check_item(item: Any) -> ItemCheck:
    """Validate one operation item; the error text names every field that is wrong."""
    if not isinstance(item, dict):
        return ItemCheck("the operation item must be a JSON object", "", "", "")
    problems: list[str] = []

    def text(source: dict, name: str, *, required: bool, max_len: int, label: str = "") -> str:
        label = label or name
        value = source.get(name)
        if value is None:
            if required:
                problems.append(f"{label} is required")
            return ""
        if not isinstance(value, str):
            problems.append(f"{label} must be a string")
            return ""
        if required and not value:
            problems.append(f"{label} must not be empty")
        if len(value) > max_len:
            problems.append(f"{label} is longer than {max_len} characters")
        return value

    def identifier(name: str, max_len: int) -> str:
        value = text(item, name, required=True, max_len=max_len)
        if value and (len(value) > max_len or not ID_PATTERN.fullmatch(value)):
            if f"{name} is longer than {max_len} characters" not in problems:
                problems.append(f"{name} must match [A-Za-z0-9_-]{{1,{max_len}}}")
            return ""
        return value

    operation_id = identifier("operationId", OPERATION_ID_MAX)
    card_id = identifier("cardId", CARD_ID_MAX)
    operation = text(item, "operation", required=True, max_len=CODE_MAX)
    text(item, "status", required=True, max_len=SHORT_CODE_MAX)
    for name, required in (("startTime", True), ("endTime", False)):
        value = text(item, name, required=required, max_len=64)
        if value and not _storable_time(value):
            problems.append(f"{name} must be an ISO 8601 date-time")
    for name, max_len in (
        ("errorCode", TEXT_MAX),
        ("error", LONG_TEXT_MAX),
        ("inputFileName", TEXT_MAX),
        ("issuerRequestId", TEXT_MAX),
        # Read at the top level too when D1 puts them there (tracking.rules._text).
        ("productionSite", TEXT_MAX),
        ("trackingType", SHORT_CODE_MAX),
    ):
        text(item, name, required=False, max_len=max_len)

    # An item that can be correlated (valid cardId and operationId) but lacks `details` or
    # `details.status` is not refused: it joins its order and asks D1 (SPEC §1.5). A 400 would
    # lose it for good, since D1 does not retry one.
    correlatable = bool(card_id and operation_id)
    details = item.get("details")
    if details is None:
        if operation in TRACKED_OPERATIONS and not correlatable:
            problems.append(f"details is required for {operation}")
    elif not isinstance(details, dict):
        problems.append("details must be an object")
    else:
        _check_details(details, operation, text, problems, correlatable=correlatable)

    return ItemCheck("; ".join(problems), card_id, operation_id, operation)


def _storable_time(value: str) -> bool:
    """An ISO 8601 time that also exists in UTC (year 1 at +14:00 does not)."""
    parsed = parse_time(value)
    if parsed is None:
        return False
    try:
        parsed.astimezone(dt.UTC)
    except OverflowError:
        return False
    return True


def _check_details(
    details: dict, operation: str, text, problems: list[str], *, correlatable: bool
) -> None:
    status = text(
        details,
        "status",
        required=operation in TRACKED_OPERATIONS and not correlatable,
        max_len=CODE_MAX,
        label="details.status",
    )
    del status
    for name, max_len in (
        ("reason", LONG_TEXT_MAX),
        ("productionSite", TEXT_MAX),
        ("inputFileName", TEXT_MAX),
        ("issuerRequestId", TEXT_MAX),
        ("trackingType", SHORT_CODE_MAX),
    ):
        text(details, name, required=False, max_len=max_len, label=f"details.{name}")
    due = text(details, "dueDate", required=False, max_len=64, label="details.dueDate")
    if due and parse_date(due) is None:
        problems.append("details.dueDate must be an ISO 8601 date or date-time")
    shipment = details.get("shipment")
    if shipment is None:
        return
    if not isinstance(shipment, dict):
        problems.append("details.shipment must be an object")
        return
    for name, max_len in (
        ("carrier", CODE_MAX),
        ("trackingNumber", TEXT_MAX),
        ("status", CODE_MAX),
        ("message", LONG_TEXT_MAX),
        ("trackingUrl", LONG_TEXT_MAX),
    ):
        text(shipment, name, required=False, max_len=max_len, label=f"details.shipment.{name}")
