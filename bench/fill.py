"""The benchmarks' data on PostgreSQL: card orders with their events and a week of deliveries,
written with set-based SQL (INSERT ... SELECT over generate_series) into a database per size.

Used by `bench/admin_bench.py` and `bench/insight_bench.py` (Django is set up by the caller).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

ISSUERS = ["BENCHBANK1", "BENCHBANK2", "BENCHBANK3", "BENCHBANK4", "BENCHBANK5"]


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


# One row per order to write: its fate (by i % 100), its times and the steps it went through.
PLAN_SQL = """
CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
WITH base AS (
    SELECT i, i %% 1000 AS m,
           (i %% 5) + 1 AS issuer_no,
           now() - ((i::bigint * 7919) %% 129600) * interval '1 minute' AS created
    FROM generate_series(%(start)s, %(stop)s) AS i
), fate AS (
    SELECT *,
        CASE
            WHEN m < 700 THEN 'shipped'
            WHEN m < 940 THEN 'open'
            WHEN m < 960 THEN 'data_exception'
            WHEN m < 965 THEN 'prod_exception'
            WHEN m < 980 THEN 'cancelled'
            WHEN m < 987 THEN 'unknown'
            WHEN m < 997 THEN 'gap'
            ELSE 'conflict'
        END AS fate
    FROM base
), paths AS (
    SELECT *,
        CASE fate
            WHEN 'shipped' THEN ARRAY['CARD_PROD_REQUESTED','DATA_PREPARED','CARD_PROD_READY',
                                      'CARD_PROD_ONGOING','CARD_PROD_DONE','CARD_SHIPPED']
            WHEN 'open' THEN (ARRAY['CARD_PROD_REQUESTED','DATA_PREPARED','CARD_PROD_READY',
                                    'CARD_PROD_ONGOING','CARD_PROD_DONE'])[1:1 + (i / 1000) %% 5]
            WHEN 'data_exception' THEN ARRAY['CARD_PROD_REQUESTED','DATA_EXCEPTION']
            WHEN 'prod_exception' THEN ARRAY['CARD_PROD_REQUESTED','DATA_PREPARED',
                                             'CARD_PROD_READY','CARD_PROD_EXCEPTION']
            WHEN 'cancelled' THEN ARRAY['CARD_PROD_REQUESTED','DATA_PREPARED',
                                        'CARD_PROD_CANCELED']
            WHEN 'unknown' THEN ARRAY['CARD_PROD_REQUESTED','DATA_PREPARED','CARD_PROD_ON_HOLD']
            WHEN 'gap' THEN ARRAY['CARD_PROD_REQUESTED','DATA_PREPARED','CARD_PROD_ONGOING']
            ELSE ARRAY['CARD_PROD_REQUESTED','CARD_PROD_CANCELED','CARD_SHIPPED']
        END AS path
    FROM fate
)
SELECT i, m, fate, issuer_no, path,
       CASE WHEN fate = 'unknown' THEN path[2] ELSE path[array_length(path, 1)] END AS status,
       -- open orders entered their stage in the last ten hours, one in ten up to three days
       -- ago (those are the stuck ones); final ones halfway between creation and now
       CASE WHEN fate IN ('open', 'unknown', 'gap') THEN
                now() - (CASE WHEN i %% 10 = 0 THEN (i::bigint * 31) %% 4320
                              ELSE (i::bigint * 31) %% 600 END) * interval '1 minute'
            ELSE created + (now() - created) / 2 END AS entered,
       created
FROM paths
"""

ORDERS_SQL = """
INSERT INTO tracking_cardorder (
    id, issuer_id, card_id, operation_id, operation, tracking_type, operation_status,
    production_status, production_rank, is_terminal, start_time, end_time, issuer_request_id,
    input_file_name, production_site, due_date, reason, error_code, error, shipment, carrier,
    tracking_number, tracking_url, shipment_status, shipment_message, shipment_final,
    has_conflict, has_unknown_status, has_gap, unknown_codes, missing_steps, state_fingerprint,
    stage_first_seen, stage_entered_at, first_event_at, last_event_at, event_count,
    needs_reconcile, reconcile_reason, reconcile_next_at, reconcile_attempts,
    last_reconciled_at, last_reconcile_outcome, created_at, updated_at)
SELECT
    p.i, iss.id, 'card-' || lpad(p.i::text, 9, '0'), 'op-' || md5(p.i::text), 'PRODUCE', '',
    CASE WHEN p.status = 'CARD_SHIPPED' THEN 'SUCCESSFUL'
         WHEN p.status IN ('DATA_EXCEPTION', 'CARD_PROD_EXCEPTION', 'CARD_PROD_CANCELED')
         THEN 'FAILED' ELSE 'PENDING' END,
    CASE WHEN p.fate = 'conflict' THEN 'CARD_PROD_CANCELED' ELSE p.status END,
    CASE p.status WHEN 'CARD_PROD_REQUESTED' THEN 10 WHEN 'DATA_PREPARED' THEN 20
        WHEN 'CARD_PROD_READY' THEN 30 WHEN 'CARD_PROD_ONGOING' THEN 40
        WHEN 'CARD_PROD_DONE' THEN 50 WHEN 'CARD_SHIPPED' THEN 60
        WHEN 'DATA_EXCEPTION' THEN 100 WHEN 'CARD_PROD_EXCEPTION' THEN 101 ELSE 102 END,
    p.status IN ('CARD_SHIPPED', 'DATA_EXCEPTION', 'CARD_PROD_EXCEPTION', 'CARD_PROD_CANCELED'),
    p.created, CASE WHEN p.status = 'CARD_SHIPPED' THEN p.entered END,
    'req-' || p.i,
    'BATCH_' || to_char(p.created, 'YYYYMMDD') || '_' || lpad((p.i / 1000)::text, 6, '0')
        || '.csv',
    (ARRAY['PERSO-SITE-EU-01', 'PERSO-SITE-EU-02', 'PERSO-SITE-US-01'])[1 + p.i %% 3],
    (p.created + interval '5 days')::date,
    CASE WHEN p.status IN ('DATA_EXCEPTION', 'CARD_PROD_EXCEPTION')
         THEN 'Embossing name exceeds 26 characters' ELSE '' END,
    CASE WHEN p.status = 'DATA_EXCEPTION' THEN 'INVALID_CARD_DATA' ELSE '' END,
    CASE WHEN p.status = 'DATA_EXCEPTION' THEN 'Card data rejected' ELSE '' END,
    CASE WHEN p.status = 'CARD_SHIPPED' THEN jsonb_build_object(
        'carrier', (ARRAY['ups','fedex','dhl','la-poste-colissimo','usps-iv-api'])[1 + p.i %% 5],
        'trackingNumber', '1Z' || lpad(p.i::text, 16, '0'),
        'status', CASE WHEN p.m < 500 THEN 'DELIVERED' ELSE 'IN_TRANSIT' END) END,
    CASE WHEN p.status = 'CARD_SHIPPED'
         THEN (ARRAY['ups','fedex','dhl','la-poste-colissimo','usps-iv-api'])[1 + p.i %% 5]
         ELSE '' END,
    CASE WHEN p.status = 'CARD_SHIPPED' THEN '1Z' || lpad(p.i::text, 16, '0') ELSE '' END,
    CASE WHEN p.status = 'CARD_SHIPPED'
         THEN 'https://track.example/' || lpad(p.i::text, 16, '0') ELSE '' END,
    CASE WHEN p.status <> 'CARD_SHIPPED' THEN ''
         WHEN p.m < 500 THEN 'DELIVERED' ELSE 'IN_TRANSIT' END,
    '', p.status = 'CARD_SHIPPED' AND p.m < 500,
    p.fate = 'conflict', p.fate = 'unknown', p.fate = 'gap',
    CASE WHEN p.fate = 'unknown' THEN '["CARD_PROD_ON_HOLD"]'::jsonb ELSE '[]'::jsonb END,
    CASE WHEN p.fate = 'gap' THEN '["CARD_PROD_READY"]'::jsonb ELSE '[]'::jsonb END,
    md5(p.i::text || 'state'),
    (SELECT jsonb_object_agg(step, to_char(p.created + (p.entered - p.created) * (n - 1)
                / greatest(array_length(p.path, 1) - 1, 1), 'YYYY-MM-DD"T"HH24:MI:SS.USOF'))
       FROM unnest(p.path) WITH ORDINALITY AS s(step, n)
      WHERE step <> 'CARD_PROD_ON_HOLD'),
    p.entered, p.created, p.entered, array_length(p.path, 1),
    p.fate IN ('unknown', 'gap', 'conflict'),
    CASE p.fate WHEN 'unknown' THEN 'unknown_status' WHEN 'gap' THEN 'gap'
         WHEN 'conflict' THEN 'conflict' ELSE '' END,
    CASE WHEN p.fate IN ('unknown', 'gap', 'conflict') THEN now() + interval '5 minutes' END,
    0, NULL, '', p.created, p.entered
FROM bench_plan p JOIN tracking_issuer iss ON iss.issuer_id = (%(issuers)s::text[])[p.issuer_no]
"""

EVENTS_SQL = """
INSERT INTO tracking_operationevent (
    issuer_id, order_id, delivery_id, fingerprint, card_id, operation_id, operation,
    operation_status, production_status, shipment_status, payload, source, first_received_at,
    last_received_at, times_received, outcome, validation_error, applied_at)
SELECT o.issuer_id, o.id, NULL, md5(o.id || '-' || s.n) || md5(s.step || o.id),
       o.card_id, o.operation_id, 'PRODUCE',
       CASE WHEN s.step = 'CARD_SHIPPED' THEN 'SUCCESSFUL'
            WHEN s.step IN ('DATA_EXCEPTION', 'CARD_PROD_EXCEPTION', 'CARD_PROD_CANCELED')
            THEN 'FAILED' ELSE 'PENDING' END,
       s.step, CASE WHEN s.step = 'CARD_SHIPPED' THEN o.shipment_status ELSE '' END,
       jsonb_build_object(
           'operationId', o.operation_id, 'operation', 'PRODUCE', 'cardId', o.card_id,
           'status', CASE WHEN s.step = 'CARD_SHIPPED' THEN 'SUCCESSFUL' ELSE 'PENDING' END,
           'startTime', to_char(o.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'issuerRequestId', o.issuer_request_id, 'inputFileName', o.input_file_name,
           'details', jsonb_strip_nulls(jsonb_build_object(
               'status', s.step, 'productionSite', o.production_site,
               'dueDate', o.due_date::text,
               'shipment', CASE WHEN s.step = 'CARD_SHIPPED' THEN o.shipment END))),
       'webhook', t.at, t.at, 1 + (o.id %% 17 = 0)::int,
       CASE WHEN s.step = 'CARD_PROD_ON_HOLD' THEN 'unknown_status'
            WHEN o.has_conflict AND s.step = 'CARD_SHIPPED' THEN 'conflict'
            ELSE 'advanced' END,
       '', t.at
FROM bench_plan p
JOIN tracking_cardorder o ON o.id = p.i
CROSS JOIN LATERAL unnest(p.path) WITH ORDINALITY AS s(step, n)
CROSS JOIN LATERAL (SELECT p.created + (p.entered - p.created) * (s.n - 1)
                           / greatest(array_length(p.path, 1) - 1, 1) AS at) t
"""

# One order in fifty also got an earlier step late, with different content: stale.
STALE_SQL = """
INSERT INTO tracking_operationevent (
    issuer_id, order_id, delivery_id, fingerprint, card_id, operation_id, operation,
    operation_status, production_status, shipment_status, payload, source, first_received_at,
    last_received_at, times_received, outcome, validation_error, applied_at)
SELECT o.issuer_id, o.id, NULL, md5(o.id || '-late') || md5('late' || o.id), o.card_id,
       o.operation_id, 'PRODUCE', 'PENDING', 'DATA_PREPARED', '',
       jsonb_build_object('operationId', o.operation_id, 'operation', 'PRODUCE',
                          'cardId', o.card_id, 'status', 'PENDING',
                          'details', jsonb_build_object('status', 'DATA_PREPARED',
                                                        'dueDate', '2030-01-01')),
       'webhook', least(o.stage_entered_at + interval '10 minutes', now()),
       least(o.stage_entered_at + interval '10 minutes', now()), 1, 'stale', '',
       least(o.stage_entered_at + interval '10 minutes', now())
FROM tracking_cardorder o
WHERE o.id BETWEEN %(start)s AND %(stop)s AND o.id %% 50 = 7 AND o.event_count >= 3
"""

# A week of deliveries: D1 batches what happened in a minute into one POST per issuer.
DELIVERIES_SQL = """
INSERT INTO tracking_notificationdelivery (
    received_at, issuer_id, issuer_id_in_path, source, correlation_id, client_identity,
    remote_addr, content_type, byte_size, item_count, new_count, duplicate_count,
    rejected_count, status_code, error_code, error, body, body_truncated)
SELECT minute, e.issuer_id, iss.issuer_id, 'webhook', md5(minute::text || e.issuer_id),
       'CN=d1-notifications', '10.0.0.1', 'application/json', count(*) * 420,
       count(*) + count(*) / 25, count(*), count(*) / 25, 0, 204, '', '', '', false
FROM (SELECT date_trunc('minute', first_received_at) AS minute, issuer_id
        FROM tracking_operationevent
       WHERE first_received_at >= now() - interval '7 days') e
JOIN tracking_issuer iss ON iss.id = e.issuer_id
GROUP BY minute, e.issuer_id, iss.issuer_id
"""


def load(*, start: int, stop: int) -> float:
    """Write orders start..stop with their events, then a week of deliveries; time it all.

    The big tables' secondary indexes are dropped for the load and built afterwards (a sort
    per index is much faster than a million insertions into each), and foreign-key triggers
    are skipped (`session_replication_role`): the rows are consistent by construction.
    """
    from django.db import connection, transaction

    began = time.perf_counter()
    params = {"start": start, "stop": stop, "issuers": ISSUERS}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        dropped = [drop_indexes(cursor, table) for table in BIG_TABLES]
        cursor.execute(PLAN_SQL, params)
        step("orders", cursor, ORDERS_SQL, params)
        step("events", cursor, EVENTS_SQL, params)
        step("stale events", cursor, STALE_SQL, params)
        cursor.execute("DELETE FROM tracking_notificationdelivery")
        step("deliveries", cursor, DELIVERIES_SQL, params)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('tracking_cardorder', 'id'), %s)", [stop]
        )
        began_indexes = time.perf_counter()
        for statements in dropped:
            for statement in statements:
                cursor.execute(statement)
        print(f"  indexes: {time.perf_counter() - began_indexes:.1f} s", flush=True)
    with connection.cursor() as cursor:
        began_vacuum = time.perf_counter()
        for table in (*BIG_TABLES, "tracking_notificationdelivery"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        print(f"  vacuum analyze: {time.perf_counter() - began_vacuum:.1f} s", flush=True)
    return time.perf_counter() - began


BIG_TABLES = ("tracking_cardorder", "tracking_operationevent")


def drop_indexes(cursor, table: str) -> list[str]:
    """Drop the table's secondary indexes and unique constraints; return what rebuilds them."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'u'",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint "
        "                      WHERE conrelid = %s::regclass AND contype IN ('p', 'u'))",
        [table, table],
    )
    indexes = cursor.fetchall()
    rebuild = []
    for name, definition in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for name, definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
        rebuild.append(definition)
    return rebuild


def step(name: str, cursor, sql: str, params: dict) -> None:
    began = time.perf_counter()
    cursor.execute(sql, params)
    print(f"  {name}: {cursor.rowcount} rows in {time.perf_counter() - began:.1f} s", flush=True)


def reset() -> None:
    from django.db import connection

    from tracking.models import Issuer

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE tracking_operationevent, tracking_orderacknowledgement, "
            "tracking_cardorder, tracking_notificationdelivery RESTART IDENTITY CASCADE"
        )
    for issuer_id in ISSUERS:
        Issuer.objects.get_or_create(issuer_id=issuer_id, defaults={"name": issuer_id.title()})


def record_load_seconds(seconds: float) -> None:
    """Keep how long the load took with the data, for a later run with --reuse."""
    from django.db import connection

    with connection.cursor() as cursor:
        comment = f"bench load seconds: {seconds:.1f}"
        cursor.execute(f"COMMENT ON TABLE tracking_cardorder IS '{comment}'")


def recorded_load_seconds() -> float | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description('tracking_cardorder'::regclass, 'pg_class')")
        comment = cursor.fetchone()[0] or ""
    prefix = "bench load seconds: "
    return float(comment.removeprefix(prefix)) if comment.startswith(prefix) else None


def use_database(base_url: str, size: int) -> str:
    """Point Django at the size's own database (created when missing) and migrate it."""
    from django.core.management import call_command
    from django.db import connection

    parts = urlsplit(base_url)
    name = f"{parts.path.lstrip('/')}_{size}"
    ensure_database(urlunsplit(parts._replace(path=f"/{name}")))
    connection.close()
    connection.settings_dict["NAME"] = name
    call_command("migrate", verbosity=0)
    return name
