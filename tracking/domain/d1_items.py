"""A D1 operation item, typed: the fields the portal reads, normalised, beside the payload sent.

`D1Item` keeps the payload exactly as it is stored (identifiers as sent, card numbers in the
text masked, what no column can hold escaped) next to the fields read from it, as a normalised
webhook event keeps the provider's raw event. `check_item` says whether an item is valid
(SPEC §1.4), and names every field that is not. Neither raises.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tracking.domain.statuses import TRACKED_OPERATIONS
from tracking.domain.times import parse_date, parse_time
from tracking.domain.validation import (
    CARD_ID_MAX,
    CODE_MAX,
    ID_PATTERN,
    LONG_TEXT_MAX,
    OPERATION_ID_MAX,
    SHORT_CODE_MAX,
    TEXT_MAX,
)

# An item as D1 sent it (any JSON value: an object when D1 keeps its contract).
D1Payload = Any


def details_of(payload: D1Payload) -> dict[str, Any]:
    """The item's `details` object; empty when the item has none or it is not an object."""
    details = payload.get("details") if isinstance(payload, dict) else None
    return details if isinstance(details, dict) else {}


def shipment_of(payload: D1Payload) -> dict[str, Any]:
    """The item's `details.shipment` object; empty when there is none or it is not an object."""
    return _shipment_of(details_of(payload))


def text_of(source: Any, name: str, max_len: int) -> str:
    """`source[name]` when it is a string, cut to `max_len`; else empty."""
    value = source.get(name) if isinstance(source, dict) else None
    return value[:max_len] if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class D1Item:
    """One operation item: its payload as stored, and its fields as the event columns hold them.

    The fields are what D1 wrote, cut to their columns' lengths, and empty when D1 wrote no
    string there; whether the item is valid is `check_item`'s to say.
    """

    payload: D1Payload
    card_id: str
    operation_id: str
    operation: str
    status: str
    production_status: str
    shipment_status: str

    @classmethod
    def of(cls, payload: D1Payload) -> D1Item:
        details = details_of(payload)
        return cls(
            payload=payload,
            card_id=text_of(payload, "cardId", CARD_ID_MAX),
            operation_id=text_of(payload, "operationId", OPERATION_ID_MAX),
            operation=text_of(payload, "operation", CODE_MAX),
            status=text_of(payload, "status", SHORT_CODE_MAX),
            production_status=text_of(details, "status", CODE_MAX),
            shipment_status=text_of(_shipment_of(details), "status", CODE_MAX),
        )

    @property
    def details(self) -> dict[str, Any]:
        return details_of(self.payload)

    @property
    def shipment(self) -> dict[str, Any]:
        return _shipment_of(self.details)

    @property
    def issuer_request_id(self) -> str:
        """D1 puts issuerRequestId at the top level or inside details (SPEC §2.2): top first."""
        top = self.payload.get("issuerRequestId") if isinstance(self.payload, dict) else None
        value = next((v for v in (top, self.details.get("issuerRequestId")) if v), "")
        return value if isinstance(value, str) else ""

    @property
    def start_time(self) -> dt.datetime | None:
        return parse_time(self.payload.get("startTime") if isinstance(self.payload, dict) else None)


def _shipment_of(details: dict[str, Any]) -> dict[str, Any]:
    shipment = details.get("shipment")
    return shipment if isinstance(shipment, dict) else {}


# ---------------------------------------------------------------------------- the item's check


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


def check_item(item: Any, *, unstorable: str = "") -> ItemCheck:
    """Validate one operation item; the error text names every field that is wrong.

    `unstorable` is `item_storable`'s problem for an item that had to be escaped: such an item
    is never valid, and the reason comes first.
    """
    problems: list[str] = [unstorable] if unstorable else []
    if not isinstance(item, dict):
        problems.append("the operation item must be a JSON object")
        return ItemCheck("; ".join(problems), "", "", "")

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
        # Read at the top level too when D1 puts them there (tracking.domain.rules._text).
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
