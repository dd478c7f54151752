"""The pull feed: every event, in an order that never skips one, read with a stable cursor.

On PostgreSQL the position of an event is (id of the transaction that wrote it, id). Ids are
given before commit, so a later position may commit first; the feed therefore lists only
events whose transaction is older than every transaction of this database still running
(`pg_stat_activity.backend_xid`; the portal's own role sees its sessions' ids): all of those
have ended, so nothing can appear later below the cursor. A long transaction holds the feed
back; it never makes it skip. On
SQLite writers are serialised, the transaction part is 0 and the id alone orders the events.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet

from tracking.models.outbound import OutboundEvent


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class FeedPosition:
    txid: int
    id: int

    def __str__(self) -> str:
        return f"{self.txid}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> FeedPosition:
        txid, sep, event_id = text.partition("-")
        if not sep or not (_digits(txid) and _digits(event_id)):
            raise BadCursor(text)
        return cls(int(txid), int(event_id))


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19


# The oldest transaction of this database still running, as a 64-bit id (pg_stat_activity
# shows 32-bit ones: the epoch is taken from the snapshot's xmax), or the next id to be given
# when none runs. Transactions of other databases on the server do not hold the feed back.
_HORIZON_SQL = """
SELECT COALESCE(min(CASE WHEN s.base + a.backend_xid::text::bigint > s.xmax
                    THEN s.base + a.backend_xid::text::bigint - 4294967296
                    ELSE s.base + a.backend_xid::text::bigint END), min(s.xmax))
FROM (SELECT x AS xmax, (x >> 32) << 32 AS base
      FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS x) AS n) AS s
LEFT JOIN pg_stat_activity AS a
  ON a.datname = current_database() AND a.backend_xid IS NOT NULL
"""


def _horizon() -> int | None:
    """Below it, every transaction has ended (PostgreSQL); None elsewhere."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_HORIZON_SQL)
        return cursor.fetchone()[0]


def feed_page(
    events: QuerySet[OutboundEvent], *, after: FeedPosition | None, limit: int
) -> tuple[list[OutboundEvent], FeedPosition | None]:
    """Up to `limit` events of `events` after `after`, in feed order, and the next cursor
    (the last event's position, or `after` when there was none)."""
    if after is not None:
        events = events.filter(Q(txid__gt=after.txid) | Q(txid=after.txid, id__gt=after.id))
    horizon = _horizon()
    if horizon is not None:
        events = events.filter(txid__lt=horizon)
    page = list(events.order_by("txid", "id")[:limit])
    if not page:
        return [], after
    last = page[-1]
    return page, FeedPosition(last.txid, last.id)
