"""D1's times: ISO 8601 read as aware datetimes; a time without a zone is read in the issuer's."""

from __future__ import annotations

import datetime as dt
from typing import Any


def lacks_zone(value: Any) -> bool:
    """Whether a time D1 sent is a valid ISO 8601 time without a zone (no offset, no Z)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        return dt.datetime.fromisoformat(value).tzinfo is None
    except ValueError:
        return False


def parse_time(value: Any, zone: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """An ISO 8601 time as an aware datetime, or None; a time without a zone is read in `zone`.

    The issuer's configured zone is passed in by the caller (UTC by default), so this stays a
    pure function. A time that does not exist in UTC (year 1 at +14:00) is no time: no
    database can store it.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    try:
        parsed.astimezone(dt.UTC)
    except OverflowError:
        return None
    return parsed


def parse_date(value: Any) -> dt.date | None:
    """`dueDate` is a date or a date-time (SPEC §2.2, ASSUMPTION); either gives a date."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        parsed = parse_time(value)
        return parsed.date() if parsed else None
