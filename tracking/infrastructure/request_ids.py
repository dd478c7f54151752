"""The request id that log lines, tasks and calls to D1 carry, and the check of a caller's id.

The id is D1's `x-correlation-id` when it is well formed (`^[A-Za-z0-9_-]{1,64}$`) and holds no
card number (`request_id_clean`), otherwise a fresh one. It lives in structlog's context
variables, bound by the observability receivers for each request and task; the intake and the
services read it here, below the surfaces that bind it. Imported by the settings (through the
logging configuration): no Django models or settings at import.
"""

from __future__ import annotations

import re
import uuid

import structlog

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_clean(value: str | None) -> str:
    """`value` when it may be logged and stored as a request id, else "".

    The one check for every id a caller sends (`x-correlation-id`): D1's pattern, and no card
    number in it (D1 says the id must not be derived from personal data; a caller may not care).
    """
    if not value or not REQUEST_ID_PATTERN.fullmatch(value):
        return ""
    from tracking.domain.masking import (
        pan_mask_text,
    )  # not at import: the settings import this module

    return value if pan_mask_text(value) == value else ""


def request_id_from_header(value: str | None) -> str:
    """D1's correlation id when `request_id_clean` accepts it, else a new id."""
    return request_id_clean(value) or request_id_new()


def request_id_current() -> str | None:
    """The request id bound to the current request or task, if any, for outgoing calls."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return (request_id_clean(value) or None) if isinstance(value, str) else None
