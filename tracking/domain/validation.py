"""Validation of D1 notification bodies (SPEC §1.4): the envelope, and items made storable.

An item's own fields are checked in `tracking.domain.d1_items` (`check_item`), against the
limits named here. Only what D1 documents is enforced; generous caps on the other strings
protect the database without refusing plausible data.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

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


# ---------------------------------------------------------------------------- the envelope
#
# Only a body that is not JSON at all, or not D1's envelope, is refused as a whole. A value no
# database column can hold (NUL, an unpaired surrogate, a number out of range, nesting beyond
# MAX_JSON_DEPTH) costs only its own item: `item_storable` keeps that item in an escaped form
# with its reason, and the item is stored invalid while the others apply.

NUMBER_MAX_DIGITS = 100  # longer numbers are kept as text (and int() of them is quadratic)
# The body, the operations array and the item itself: the levels above an item's own nesting
# (for `_deep_containers_as_text`, when the parser gives up on a body nested thousands deep).
_ENVELOPE_LEVELS = 3
_TOO_DEEP = "\x00nested-too-deep:"  # NUL makes the marker unstorable, so it is never kept as is
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


@dataclass(frozen=True)
class UnstorableNumber:
    """A JSON number no column can hold as a number (1e999, NaN, 5,000 digits); kept as text."""

    text: str


def _number_float(text: str) -> float | UnstorableNumber:
    if len(text) > NUMBER_MAX_DIGITS:
        return UnstorableNumber(text)
    value = float(text)
    return UnstorableNumber(text) if math.isinf(value) else value


def _number_int(text: str) -> int | UnstorableNumber:
    return UnstorableNumber(text) if len(text) > NUMBER_MAX_DIGITS else int(text)


def _json_loads(text: str) -> Any:
    # strict=False: a raw control character inside a string costs its item, not the body.
    return json.loads(
        text,
        strict=False,
        parse_constant=UnstorableNumber,
        parse_float=_number_float,
        parse_int=_number_int,
    )


def parse_envelope(raw: bytes, *, max_operations: int) -> list[Any]:
    """The `operations` list of a body, or EnvelopeError saying why the body is refused.

    The items are returned as parsed, with `UnstorableNumber` in place of numbers that cannot
    be stored; `item_storable` makes each item storable before anything else reads it.
    """
    try:
        body = json_body_parse(raw)
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
    return operations


def json_body_parse(raw: bytes) -> Any:
    """A JSON body parsed without ever exhausting the stack; ValueError when it is not JSON.

    Bytes that are not UTF-8 become lone surrogates, and containers nested beyond an item's
    depth limit become marker strings (`nested_too_deep` tells them), so each costs only the
    item holding it. RecursionError only when even the fallback cannot read the body.
    """
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    try:
        return _json_loads(text)
    except RecursionError:
        return _json_loads(_deep_containers_as_text(text))


def nested_too_deep(value: Any) -> bool:
    """Whether `value` stands for a container `json_body_parse` found nested too deeply."""
    return isinstance(value, str) and value.startswith(_TOO_DEEP)


def _deep_containers_as_text(text: str) -> str:
    """`text` with every container nested beyond an item's depth limit replaced by a string.

    Used only when the parser itself gives up on the depth. The string holds the container's
    JSON text behind a marker that `item_storable` recognises, so the item is kept invalid with
    the text of what was too deep.
    """
    limit = _ENVELOPE_LEVELS + MAX_JSON_DEPTH
    parts: list[str] = []
    depth, copied, opened_at = 0, 0, -1
    for token in _JSON_TOKENS.finditer(text):
        char = token.group()[0]
        if char in "[{":
            depth += 1
            if depth == limit + 1:
                opened_at = token.start()
        elif char in "]}":
            if depth == limit + 1 and opened_at >= 0:
                parts.append(text[copied:opened_at])
                parts.append(json.dumps(_TOO_DEEP + text[opened_at : token.end()]))
                copied, opened_at = token.end(), -1
            depth -= 1
    parts.append(text[copied:])
    return "".join(parts)


# ---------------------------------------------------------------------------- storable items

_PROBLEMS_SHOWN = 5
_PATH_SHOWN = 120


@dataclass(frozen=True)
class StorableItem:
    """An item as it can be stored, and why it differs from what was sent ("" when it does not)."""

    value: Any
    problem: str = ""


def item_storable(item: Any) -> StorableItem:
    """`item` in a form every database column can hold, escaping only what could not be stored.

    NUL and unpaired surrogates (also bytes that were not UTF-8) are written as their `\\uXXXX`
    escape; numbers out of range as their text; containers nested deeper than MAX_JSON_DEPTH as
    their JSON text. The problem names each place (the item is then stored invalid). Returns the
    same object when nothing had to change.
    """
    if _is_storable(item, 0):  # the usual case, checked without building anything
        return StorableItem(item)
    problems: list[str] = []
    value = _storable(item, "", 0, problems)
    if not problems:
        return StorableItem(item)
    shown = problems[:_PROBLEMS_SHOWN]
    if len(problems) > _PROBLEMS_SHOWN:
        shown.append(f"and {len(problems) - _PROBLEMS_SHOWN} more")
    return StorableItem(value, "stored escaped: " + "; ".join(shown))


def _is_storable(value: Any, level: int) -> bool:
    kind = type(value)
    if kind is str:
        return "\x00" not in value and (value.isascii() or _is_utf8(value))
    if kind is dict:
        return level <= MAX_JSON_DEPTH and all(
            _is_storable(key, level) and _is_storable(child, level + 1)
            for key, child in value.items()
        )
    if kind is list:
        return level <= MAX_JSON_DEPTH and all(_is_storable(child, level + 1) for child in value)
    if kind is float:
        return math.isfinite(value)
    return kind is not UnstorableNumber


def _storable(value: Any, path: str, level: int, problems: list[str]) -> Any:
    if isinstance(value, str):
        return _storable_text(value, path or "the item", problems)
    if isinstance(value, float) and not math.isfinite(value):
        value = UnstorableNumber(repr(value))  # from a parser that lets infinity and NaN through
    if isinstance(value, UnstorableNumber):
        problems.append(f"{path or 'the item'} is a number no column can hold ({value.text[:24]})")
        return value.text
    if isinstance(value, (dict, list)) and level > MAX_JSON_DEPTH:
        problems.append(f"{path} is nested deeper than {MAX_JSON_DEPTH} levels")
        return _json_text(value)
    if isinstance(value, dict):
        changed = False
        kept: dict[str, Any] = {}
        for key, child in value.items():
            key_path = _path(path, key)
            new_key = _storable_text(key, f"the key {key_path}", problems)
            new_child = _storable(child, key_path, level + 1, problems)
            changed = changed or new_key is not key or new_child is not child
            kept[new_key] = new_child
        return kept if changed else value
    if isinstance(value, list):
        items = [
            _storable(child, f"{path}[{index}]"[-2 * _PATH_SHOWN :], level + 1, problems)
            for index, child in enumerate(value)
        ]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def _path(path: str, key: str) -> str:
    key = _escaped(key)[:_PATH_SHOWN]
    path = f"{path}.{key}" if path else key
    return path if len(path) <= 2 * _PATH_SHOWN else "…" + path[-2 * _PATH_SHOWN :]


def _storable_text(text: str, where: str, problems: list[str]) -> str:
    if text.startswith(_TOO_DEEP):
        problems.append(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
        return _escaped(text.removeprefix(_TOO_DEEP))
    escaped = _escaped(text)
    if escaped is text:
        return text
    if "\x00" in text:
        problems.append(f"{where} holds a NUL character (\\u0000)")
    if not _is_utf8(text):
        problems.append(f"{where} holds an unpaired surrogate or a byte that is not UTF-8")
    return escaped


def _escaped(text: str) -> str:
    """`text` with NUL and unpaired surrogates as `\\uXXXX`; the same object when it has none."""
    if "\x00" not in text and (text.isascii() or _is_utf8(text)):
        return text
    return "".join(
        f"\\u{ord(char):04x}" if char == "\x00" or "\ud800" <= char <= "\udfff" else char
        for char in text
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_text(value: Any) -> str:
    """The compact JSON text of a (too deeply nested) value, as storable ASCII."""
    try:
        return json.dumps(
            value,
            ensure_ascii=True,
            separators=(",", ":"),
            default=lambda v: v.text if isinstance(v, UnstorableNumber) else repr(v),
        )
    except RecursionError:
        return "(nested too deeply to be shown)"
