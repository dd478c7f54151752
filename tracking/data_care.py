"""Data care: no full card number is stored, and personal fields are masked for viewers.

Card numbers. D1 never needs to send a PAN, so one in a payload is a mistake upstream. Every
13-19 digit run (or grouped by spaces, dots, dashes or slashes as on a card) that passes the
Luhn check, in any string, number (`4111111111111111` and `4111111111111111.0` alike) or key of
an item, is replaced by asterisks keeping the last four digits (`************1111`) before the
item is fingerprinted and stored; the rest of the item is kept exactly as sent. Carrier
references can look like card numbers (a 15-digit tracking number passes Luhn one time in ten),
so the fields in `PAN_SCAN_EXEMPT_FIELDS` are left alone. A masked identifier no longer
matches D1's id pattern, so such an item is stored as invalid and shows up for staff instead of
silently merging orders.

Free text. What a person types (an acknowledgement note, a comment) goes through
`free_text_mask` before it is stored: people write card numbers every which way, so any run of
13-19 digits with a few spaces or punctuation between them that passes the Luhn check is masked.

Personal fields. `PERSONAL_FIELDS` names model fields ("app_label.Model.field") that staff
without the `tracking.view_personal_fields` permission (viewers) see masked, in the admin and in
the read API.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django.conf import settings

# A run of 13-19 digits, or the groupings printed on cards (4-4-4-4[-3], 4-6-4/5) with one
# kind of separator. Looser groupings would catch ids such as "op-000022-9215148ab1".
PAN_CANDIDATE = re.compile(
    r"(?<!\d)(?:\d{13,19}"
    r"|\d{4}([ ./\u00a0-])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"
    r"|\d{4}([ ./\u00a0-])\d{6}\2\d{4,5})(?![\d])"
)
# In free text: any run of digits with up to two spaces or punctuation marks between them.
_FREE_TEXT_DIGIT_RUN = re.compile(r"\d(?:[\s.,/:_*-]{0,2}\d)*")
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
    return "".join(str(int(char)) for char in text if char.isdecimal())


def _mask_match(match: re.Match) -> str:
    digits = _digits(match.group())
    if not luhn_valid(digits):
        return match.group()
    return "*" * (len(digits) - 4) + digits[-4:]


def _free_text_match(match: re.Match) -> str:
    digits = _digits(match.group())
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "*" * (len(digits) - 4) + digits[-4:]
    # Not one card number as a whole, but it may hold some: "4111... 5500...", "4111....0".
    return pan_mask_text(match.group())


def pan_mask_text(text: str) -> str:
    """`text` with every Luhn-valid 13-19 digit run masked to its last four digits."""
    if len(text) < 13:
        return text
    return PAN_CANDIDATE.sub(_mask_match, text)


# A JSON number written with an exponent (`4.111111111111111e15`): the text scan above sees no
# digit run in it, yet it is a card number once read.
_EXPONENT_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?[eE][+]?\d{1,2}(?![\w.])")


def _exponent_match(match: re.Match) -> str:
    try:
        value = Decimal(match.group())
    except InvalidOperation:
        return match.group()
    if value != value.to_integral_value():
        return match.group()
    digits = str(abs(int(value)))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return '"' + "*" * (len(digits) - 4) + digits[-4:] + '"'
    return match.group()


def pan_mask_body(text: str) -> str:
    """A body as kept for staff: `pan_mask_text`, and card numbers written as JSON exponents
    replaced by their masked text (quoted, so that the JSON stays readable)."""
    return _EXPONENT_NUMBER.sub(_exponent_match, pan_mask_text(text))


def free_text_mask(text: str) -> str:
    """A note a person typed, as it may be stored and shown: card numbers masked however written.

    For acknowledgement notes, comments and any other free text staff enter. Looser than
    `pan_mask_text` (which must leave D1's identifiers alone): "4111 1111-1111.1111",
    "4 1 1 1 ..." and "4111111111111111.0" are all masked to their last four digits.
    """
    if sum(char.isdecimal() for char in text) < 13:
        return text
    return _FREE_TEXT_DIGIT_RUN.sub(_free_text_match, text)


def pan_mask_value(value: Any, *, exempt: frozenset[str] = frozenset(), path: str = "") -> Any:
    """A copy of a JSON value with card numbers masked; the same object when nothing changed."""
    if isinstance(value, str):
        return pan_mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 10**12 <= abs(value) < 10**19 and luhn_valid(str(abs(value))):
            return pan_mask_text(str(value))
        return value
    if isinstance(value, float):
        # 4111111111111111.0 is the same card number as a JSON number with a decimal point.
        if 1e12 <= abs(value) < 1e19:
            digits = str(int(abs(value)))
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                return "*" * (len(digits) - 4) + digits[-4:]
        return value
    if isinstance(value, dict):
        changed = False
        masked = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            new_key = pan_mask_text(key) if isinstance(key, str) else key
            new_item = item if child in exempt else pan_mask_value(item, exempt=exempt, path=child)
            changed = changed or new_key is not key or new_item is not item
            masked[new_key] = new_item
        return masked if changed else value
    if isinstance(value, list):
        items = [pan_mask_value(item, exempt=exempt, path=path) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def pan_mask_item(item: Any) -> Any:
    """One notification item with card numbers masked (see the module docstring)."""
    return pan_mask_value(item, exempt=frozenset(settings.PAN_SCAN_EXEMPT_FIELDS))


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
