"""The PostgreSQL statements of ingest: data-modifying CTEs, each keeping the lock order inside it.

A sub-statement that must come after a lock reads the locking CTE through an uncorrelated
subquery (an InitPlan, run to its end before the first row). JSON documents carry the rows (one
parameter each, encoded in C), so each statement's text is the same for every batch. Only quoted
names from the models' metadata are interpolated; values are parameters.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable
from typing import Any

from django.db import connection

from tracking.intake.ingest.engine import EVENT_COLUMNS
from tracking.intake.ingest.portable import BOOKKEEPING_FIELDS
from tracking.intake.ingest.rederive import WRITTEN_COLUMNS
from tracking.models import CardOrder, NotificationDelivery, OperationEvent, OrderChange

DELIVERY_FIELDS = [f for f in NotificationDelivery._meta.concrete_fields if not f.primary_key]


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def columns_list(model, names: Iterable[str]) -> str:
    quote = connection.ops.quote_name
    return ", ".join(quote(model._meta.get_field(n).column) for n in names)


@functools.cache
def begin_sql(insert_delivery: bool) -> str:
    delivery, order, event = (table(m) for m in (NotificationDelivery, CardOrder, OperationEvent))
    if insert_delivery:
        columns = ", ".join(connection.ops.quote_name(f.column) for f in DELIVERY_FIELDS)
        placeholders = ", ".join(f"%(d_{f.column})s" for f in DELIVERY_FIELDS)
        d = f"INSERT INTO {delivery} ({columns}) VALUES ({placeholders}) RETURNING id"  # noqa: S608
    else:
        d = (
            f"UPDATE {delivery} SET new_count = 0, "  # noqa: S608
            "duplicate_count = %(d_duplicate_count)s, "
            "rejected_count = %(d_rejected_count)s WHERE id = %(d_id)s RETURNING id"
        )
    returned = columns_list(CardOrder, BOOKKEEPING_FIELDS)
    # Only quoted names from the models' metadata are interpolated; values are parameters.
    return f"""
WITH c AS MATERIALIZED (
  SELECT r->>0 AS fingerprint, (r->>1)::integer AS copies
  FROM jsonb_array_elements(%(copies)s::jsonb) AS r
),
k AS MATERIALIZED (
  SELECT r->>0 AS card_id, r->>1 AS operation_id, r->>2 AS operation, n
  FROM jsonb_array_elements(%(keys)s::jsonb) WITH ORDINALITY AS x(r, n)
),
d AS ({d}),
seen AS MATERIALIZED (
  SELECT count(*) AS n FROM {event}
  WHERE issuer_id = %(issuer)s AND fingerprint = ANY(ARRAY(SELECT fingerprint FROM c))
),
counted AS (
  UPDATE {event} SET times_received = {event}.times_received + c.copies,
    last_received_at = %(now)s
  FROM c
  WHERE {event}.issuer_id = %(issuer)s AND {event}.fingerprint = c.fingerprint
    AND {event}.id IN (
      SELECT id FROM {event} WHERE issuer_id = %(issuer)s
        AND fingerprint = ANY(ARRAY(SELECT fingerprint FROM c))
        AND (SELECT n FROM seen) = %(distinct)s
      ORDER BY fingerprint FOR UPDATE)
  RETURNING {event}.fingerprint
),
locked AS MATERIALIZED (
  SELECT card_id, operation_id, event_count FROM {order}
  WHERE issuer_id = %(issuer)s AND card_id = ANY(ARRAY(SELECT card_id FROM k))
    AND (SELECT n FROM seen) < %(distinct)s
  ORDER BY card_id, operation_id FOR UPDATE
),
up AS (
  INSERT INTO {order} (issuer_id, card_id, operation_id, operation, created_at, updated_at)
  SELECT %(issuer)s, k.card_id, k.operation_id, k.operation, %(now)s, %(now)s
  FROM k
  WHERE (SELECT n FROM seen) < %(distinct)s
    AND NOT EXISTS (
      SELECT 1 FROM locked l WHERE l.event_count = 0 AND NOT EXISTS (
        SELECT 1 FROM k WHERE k.card_id = l.card_id AND k.operation_id = l.operation_id))
  ORDER BY k.n
  ON CONFLICT (issuer_id, card_id, operation_id) DO UPDATE SET operation = EXCLUDED.operation
  RETURNING {returned}
)
SELECT (SELECT id FROM d), ARRAY(SELECT fingerprint FROM counted),
  (SELECT json_agg(up) FROM up)
"""  # noqa: S608


@functools.cache
def events_lock_sql() -> str:
    event = table(OperationEvent)
    # Only quoted names from the model's metadata are interpolated; values are parameters.
    return f"""
WITH f AS MATERIALIZED (
  SELECT fingerprint FROM jsonb_array_elements_text(%(fingerprints)s::jsonb) AS fingerprint
),
o AS MATERIALIZED (
  SELECT id::bigint FROM jsonb_array_elements_text(%(orders)s::jsonb) AS id
)
SELECT id, order_id, fingerprint, first_received_at, last_received_at,
  CASE WHEN order_id = ANY(ARRAY(SELECT id FROM o)) THEN payload END, outcome,
  applied_at IS NOT NULL
FROM {event}
WHERE (issuer_id = %(issuer)s AND fingerprint = ANY(ARRAY(SELECT fingerprint FROM f)))
  OR order_id = ANY(ARRAY(SELECT id FROM o))
ORDER BY fingerprint FOR UPDATE
"""  # noqa: S608


@functools.cache
def finish_sql() -> str:
    order, event, delivery = (table(m) for m in (CardOrder, OperationEvent, NotificationDelivery))
    change = table(OrderChange)
    quote = connection.ops.quote_name
    fields = [CardOrder._meta.get_field(n) for n in WRITTEN_COLUMNS]
    assignments = ", ".join(
        f"{quote(f.column)} = {_from_json(f, i + 1)}" for i, f in enumerate(fields)
    )
    event_fields = [OperationEvent._meta.get_field(n) for n in EVENT_COLUMNS]
    event_columns = ", ".join(quote(f.column) for f in event_fields)
    event_values = ", ".join(_from_json(f, i) for i, f in enumerate(event_fields))
    applied = len(event_fields)
    # Only quoted names from the models' metadata are interpolated; values are parameters.
    # A stored event's copies and its changed outcome are written by one UPDATE: the
    # sub-statements share one snapshot, so a second UPDATE of the same row in the statement
    # would be skipped (PostgreSQL applies only one), and a copy or an outcome would be lost.
    return f"""
WITH ins AS (
  INSERT INTO {event} (issuer_id, delivery_id, source, first_received_at, last_received_at,
    applied_at, {event_columns})
  SELECT %(issuer)s, %(delivery)s, %(source)s, %(now)s, %(now)s,
    CASE WHEN (r->>{applied})::boolean THEN %(now)s::timestamptz END, {event_values}
  FROM jsonb_array_elements(%(events)s::jsonb) AS r
  ON CONFLICT (issuer_id, fingerprint) DO NOTHING
  RETURNING id, fingerprint
),
c AS MATERIALIZED (
  SELECT (c->>0)::bigint AS id, (c->>1)::integer AS copies
  FROM jsonb_array_elements(%(copies)s::jsonb) AS c
),
x AS MATERIALIZED (
  SELECT (x->>0)::bigint AS id, x->>1 AS outcome
  FROM jsonb_array_elements(%(outcomes)s::jsonb) AS x
),
e AS (
  UPDATE {event} SET
    times_received = {event}.times_received + COALESCE(cx.copies, 0),
    last_received_at = CASE WHEN cx.copies IS NULL THEN {event}.last_received_at
      ELSE %(now)s END,
    outcome = COALESCE(cx.outcome, {event}.outcome),
    applied_at = CASE WHEN cx.outcome IS NULL THEN {event}.applied_at ELSE %(now)s END
  FROM (SELECT id, c.copies, x.outcome FROM c FULL JOIN x USING (id)) AS cx
  WHERE {event}.id = cx.id
),
o AS (
  UPDATE {order} SET {assignments}
  FROM jsonb_array_elements(%(orders)s::jsonb) AS r WHERE {order}.id = (r->>0)::bigint
),
cards AS MATERIALIZED (
  SELECT card_id FROM jsonb_array_elements_text(%(cards)s::jsonb) AS card_id
)
UPDATE {delivery} SET new_count = (SELECT count(*) FROM ins),
  duplicate_count = %(total)s - (SELECT count(*) FROM ins), rejected_count = %(rejected)s
WHERE id = %(delivery)s
RETURNING (SELECT json_agg(json_build_array(id, fingerprint)) FROM ins), ARRAY(
  SELECT card_id FROM {order}
  WHERE issuer_id = %(issuer)s AND card_id = ANY(ARRAY(SELECT card_id FROM cards))
  GROUP BY card_id
  HAVING count(*) > 1 OR bool_or(exception_reason <> '' OR d1_not_found_since IS NOT NULL)
  UNION
  SELECT card_id FROM {change} WHERE issuer_id = %(issuer)s
    AND card_id = ANY(ARRAY(SELECT card_id FROM cards)) AND order_id IS NULL
)
"""  # noqa: S608


def _from_json(field, index: int, row: str = "r") -> str:
    """SQL reading `field`'s value at `index` of a JSON array row (text keeps its length check).

    A nullable JSON column takes JSON null as SQL NULL, as `JSONField` saves None; a column
    that cannot be NULL (an event's payload) keeps it as the JSON value D1 sent.
    """
    if field.get_internal_type() == "JSONField":
        return f"NULLIF({row}->{index}, 'null')" if field.null else f"{row}->{index}"
    if field.get_internal_type() in ("CharField", "TextField", "URLField"):
        return f"{row}->>{index}"
    return f"({row}->>{index})::{field.cast_db_type(connection)}"


def json_rows(rows: list) -> str:
    """Rows as one JSON document: one parameter, encoded in C, whatever the batch size."""
    return json.dumps(rows, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> str:
    if isinstance(value, dt.date):  # datetimes too: ISO 8601 with their offset
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not stored by ingest")
