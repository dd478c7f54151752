"""Data care: identifiers kept exactly as sent, card numbers masked in free text, personal fields.

Identifiers and text. D1 never needs to send a PAN, so one in a payload is a mistake upstream.
But the issuer chooses its card ids, and about one random 16-digit id in ten passes the Luhn
check: an identifier is never a card number, whatever its digits. So an item's fields are of
two kinds (`IDENTIFIER_FIELDS`, with `docs/security.md`'s table):

- identifiers (`cardId`, `operationId`, `issuerRequestId`, `inputFileName`, at the top level and
  inside `details`, the carrier's tracking number and URL, and the fields named in
  `PAN_SCAN_EXEMPT_FIELDS`) are stored exactly as sent and found by their exact value;
- everything else is text: D1's and the carrier's messages (`error`, `details.reason`,
  `details.shipment.message`, ...), codes, and any field D1 may add that the portal does not
  know. Text goes through `free_text_mask` before the item is fingerprinted and stored.

`mask_item_text_fields` applies this rule, the one rule for webhook, on-demand answers and
replays; registration and the upload take identifiers only, kept as typed.

Free text. People and carriers write card numbers every which way, so any run of 13-19 digits
with up to three spaces or punctuation marks between them (`4111_1111_1111_1111`,
`4111 - 1111 - 1111 - 1111`, `4111(1111)1111(1111)`, dashes of every width) that passes the Luhn
check is masked to its last four digits. A run that reads as a date or a time of day
(`2026-03-05 10:30:15`) is a card number only if it is one as printed on a card. Acknowledgement
notes, refused bodies and D1's error bodies are free text too; audit details are, except the
values under an identifier's name (`DETAIL_IDENTIFIER_KEYS`, `pan_mask_value`).

Machine text. Log lines and request paths are masked by `pan_mask_text`, which catches card
numbers written whole or in the groupings printed on cards (4-4-4-4[-3], 4-6-4/5) with any of
those separators; it leaves ids such as `op-000022-9215148ab1` alone, but a log line is text:
a numeric card id that passes Luhn shows there with its last four digits only.

Personal fields. `PERSONAL_FIELDS` names model fields ("app_label.Model.field") that staff
without the `tracking.view_personal_fields` permission (viewers) see masked, in the admin and in
the read API.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from django.conf import settings

# Item fields that hold identifiers, by their path in the item: never masked, never changed.
IDENTIFIER_FIELDS = frozenset(
    {
        "cardId",
        "operationId",
        "issuerRequestId",
        "inputFileName",
        "details.issuerRequestId",
        "details.inputFileName",
        "details.consumerId",
        # A carrier's reference: a 15-digit tracking number passes Luhn one time in ten.
        "details.shipment.trackingNumber",
        "details.shipment.trackingUrl",
    }
)
# Names under which the portal's own records (audit details) hold identifiers: kept as written.
DETAIL_IDENTIFIER_KEYS = frozenset(
    {
        "card_id",
        "card_ids",
        "cards",
        "operation_id",
        "operation_ids",
        "issuer_request_id",
        "input_file_name",
        "file",
        "cardId",
        "operationId",
        "issuerRequestId",
        "inputFileName",
    }
)
# Between the digits of a card number as people write it: spaces, punctuation, dashes of any
# width (hyphen, figure, en and em dashes, minus sign), brackets.
_SEPARATORS = r"\s.,/:;_*()\[\]\u2010-\u2015\u2212-"
_SEPARATOR = rf"[{_SEPARATORS}]"
# One separator between the groups printed on cards: a mark, perhaps spaced ("4111 - 1111"),
# or a bracket pair's side ("4111(1111)1111(1111)").
_GROUP_SEPARATOR = r"(?:\s?[.,/_\u2010-\u2015\u2212-]\s?|[\s\u00a0]|[()\[\]])"
# A run of 13-19 digits, or the groupings printed on cards (4-4-4-4[-3], 4-6-4/5). Looser
# groupings would catch ids such as "op-000022-9215148ab1".
PAN_CANDIDATE = re.compile(
    r"(?<!\d)(?:\d{13,19}"
    rf"|\d{{4}}{_GROUP_SEPARATOR}\d{{4}}{_GROUP_SEPARATOR}\d{{4}}{_GROUP_SEPARATOR}\d{{4}}"
    rf"(?:{_GROUP_SEPARATOR}\d{{3}})?"
    rf"|\d{{4}}{_GROUP_SEPARATOR}\d{{6}}{_GROUP_SEPARATOR}\d{{4,5}})(?!\d)"
)
# In free text: a run of at least 13 digits with up to three spaces or punctuation marks
# between them (shorter runs cannot hold a card number, and are left to the regex engine).
_FREE_TEXT_DIGIT_RUN = re.compile(rf"\d(?>{_SEPARATOR}{{0,3}}+\d){{12,}}+")
# A date (2026-03-05, 05/03/2026) or a time of day (10:30) inside a run of digits.
_DATE_OR_TIME = re.compile(
    r"(?<!\d)(?:\d{4}[-/.]\d{2}[-/.]\d{2}|\d{2}[-/.]\d{2}[-/.]\d{4})(?!\d)|\d:\d{2}(?!\d)"
)
_NOT_ASCII_DIGIT = re.compile(r"[^0-9]")
PERSONAL_MASK = "•••••• (hidden)"
PERSONAL_PERMISSION = "tracking.view_personal_fields"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _digits(text: str) -> str:
    # Any script's decimal digits (full-width ones too), as ASCII.
    if text.isascii():
        return _NOT_ASCII_DIGIT.sub("", text)
    return "".join(str(int(char)) for char in text if char.isdecimal())


def _masked(digits: str) -> str:
    return "*" * (len(digits) - 4) + digits[-4:]


def _mask_match(match: re.Match) -> str:
    text = match.group()
    digits = _digits(text)
    if digits[0] == "0":
        return text  # no payment card number begins with 0 (ISO/IEC 7812's major industry id)
    if luhn_valid(digits):
        return _masked(digits)
    if len(digits) == 19 and not text.isdecimal() and luhn_valid(digits[:16]):
        # A 4-4-4-4 card number followed by three more digits of something else.
        end = [m.end() for m in re.finditer(r"\d", text)][15]
        return _masked(digits[:16]) + text[end:]
    return text


def pan_mask_text(text: str) -> str:
    """`text` with every card number written whole or grouped as on a card masked.

    For machine text (log lines, request paths, error excerpts): ids such as
    "op-000022-9215148ab1" are left alone. People's and carriers' text goes through
    `free_text_mask`.
    """
    if len(text) < 13:
        return text
    parts: list[str] = []
    copied = searched = 0
    while (match := PAN_CANDIDATE.search(text, searched)) is not None:
        masked = _mask_match(match)
        if masked == match.group():
            # Not a card number; one may still start inside it ("05/03/2026 4111 1111 ...").
            searched = match.start() + 1
            continue
        parts += [text[copied : match.start()], masked]
        copied = searched = match.end()
    if not copied:
        return text
    parts.append(text[copied:])
    return "".join(parts)


def _free_text_match(match: re.Match) -> str:
    run = match.group()
    digits = _digits(run)
    if (
        13 <= len(digits) <= 19
        and digits[0] != "0"
        and luhn_valid(digits)
        # A date or a time of day is one only when its digits are printed as on a card.
        and (not _DATE_OR_TIME.search(run) or PAN_CANDIDATE.fullmatch(run))
    ):
        return _masked(digits)
    # Not one card number as a whole, but it may hold some: "4111... 5500...", "4111....0".
    return pan_mask_text(run)


def free_text_mask(text: str) -> str:
    """Text a person or a carrier wrote, as it may be stored and shown: card numbers masked.

    For D1's and carriers' messages, acknowledgement notes, refused bodies and any other free
    text. Looser than `pan_mask_text`: "4111 1111-1111.1111", "4 1 1 1 ...", "4111_1111_...",
    "4111 - 1111 - ...", "4111(1111)1111(1111)" and "4111111111111111.0" are all masked to
    their last four digits; dates and times of day are left alone.
    """
    if len(text) < 13:
        return text
    masked = _FREE_TEXT_DIGIT_RUN.sub(_free_text_match, text)
    return text if masked == text else masked  # unchanged: the same object, as callers test


def text_mask_value(value: Any) -> Any:
    """A copy of a JSON value whose texts, keys and numbers are masked as free text.

    Returns the same object when nothing changed.
    """
    if isinstance(value, str):
        return free_text_mask(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 10**12 <= abs(value) < 10**19 and luhn_valid(str(abs(value))):
            return _masked(str(abs(value)))
        return value
    if isinstance(value, float):
        # 4111111111111111.0 is the same card number as a JSON number with a decimal point.
        if 1e12 <= abs(value) < 1e19:
            digits = str(int(abs(value)))
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                return _masked(digits)
        return value
    if isinstance(value, dict):
        return _fields_mask(value, identifiers=frozenset(), path="")
    if isinstance(value, list):
        items = [text_mask_value(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def _fields_mask(value: dict, *, identifiers: frozenset[str], path: str) -> dict:
    changed = False
    masked = {}
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        new_key = free_text_mask(key) if isinstance(key, str) else key
        if child in identifiers and not isinstance(item, (dict, list)):
            new_item = item  # an identifier, whatever its digits
        elif isinstance(item, dict) and identifiers:
            new_item = _fields_mask(item, identifiers=identifiers, path=child)
        else:
            new_item = text_mask_value(item)
        changed = changed or new_key is not key or new_item is not item
        masked[new_key] = new_item
    return masked if changed else value


def item_identifier_fields() -> frozenset[str]:
    """The item paths kept exactly as sent: `IDENTIFIER_FIELDS` and `PAN_SCAN_EXEMPT_FIELDS`."""
    return _identifier_fields(tuple(getattr(settings, "PAN_SCAN_EXEMPT_FIELDS", ())))


@lru_cache(maxsize=16)
def _identifier_fields(exempt: tuple[str, ...]) -> frozenset[str]:
    return IDENTIFIER_FIELDS | frozenset(exempt)


def mask_item_text_fields(item: Any) -> Any:
    """One operation item as it is stored: identifiers exactly as sent, its text masked.

    The one rule for webhook items, on-demand answers and replays (see the module docstring).
    Returns the same object when nothing changed.
    """
    if not isinstance(item, dict):
        return text_mask_value(item)
    return _fields_mask(item, identifiers=item_identifier_fields(), path="")


# The name callers used before identifiers were told apart from text.
pan_mask_item = mask_item_text_fields


def pan_mask_value(value: Any) -> Any:
    """A copy of a JSON value the portal writes (audit details) with its texts masked.

    A value under an identifier's name (`DETAIL_IDENTIFIER_KEYS`: "card_id", "cards", the
    uploaded "file", ...), a string, a number or a list of them, is an identifier and kept; the
    rest is free text. Returns the same object when nothing changed.
    """
    if isinstance(value, dict):
        changed = False
        masked = {}
        for key, item in value.items():
            if key in DETAIL_IDENTIFIER_KEYS and _is_identifier_value(item):
                new_item = item
            else:
                new_item = pan_mask_value(item)
            new_key = free_text_mask(key) if isinstance(key, str) else key
            changed = changed or new_key is not key or new_item is not item
            masked[new_key] = new_item
        return masked if changed else value
    if isinstance(value, list):
        items = [pan_mask_value(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return text_mask_value(value)


def _is_identifier_value(value: Any) -> bool:
    scalar = (str, int)
    return isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(item, scalar) for item in value)
    )


# ---------------------------------------------------------------------------- personal fields


@lru_cache(maxsize=16)
def _personal(entries: tuple[str, ...]) -> dict[str, frozenset[str]]:
    by_model: dict[str, set[str]] = {}
    for entry in entries:
        label, _, field = entry.strip().rpartition(".")
        if label and field:
            by_model.setdefault(label.lower(), set()).add(field)
    return {label: frozenset(fields) for label, fields in by_model.items()}


def personal_fields(model) -> frozenset[str]:
    """The names of `model`'s fields that PERSONAL_FIELDS marks as personal."""
    return _personal(tuple(settings.PERSONAL_FIELDS)).get(model._meta.label_lower, frozenset())


def can_see_personal(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(PERSONAL_PERMISSION))


def personal_mask(value: Any) -> Any:
    """What a viewer sees instead of a personal value (empty values stay empty)."""
    if value in (None, "", [], {}):
        return value
    return PERSONAL_MASK
