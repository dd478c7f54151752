#!/usr/bin/env python
"""Benchmark of the back office on PostgreSQL: the same pages at 100,000 to 2,000,000 orders.

Loads card orders with their events (and a week of deliveries) into a dedicated database with
set-based SQL (INSERT ... SELECT over generate_series), then times the admin pages and
/metrics in-process with Django's test client: the server time of each request (median of
several runs), the part of it spent in the database, and the number of queries it ran. Then
streams the CSV export of every order in a child process and prints rows per second and the
child's resident memory (after a tenth of the rows and at the end).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_perf_admin \\
        .venv/bin/python bench/admin_bench.py --sizes 100000 1000000 2000000 --reuse

Each size gets its own database, `<name>_<size>`, created when missing and emptied first
(`--reuse` keeps one that already holds the size). 2,000,000 orders hold about 10 million
events: the row that shows what does not grow with history.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portal_perf_admin"
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


# ---------------------------------------------------------------------------- loading

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


# ---------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    page: str
    url: str
    status: int
    median_ms: float
    best_ms: float
    db_ms: float  # median time spent in the database
    queries: int


def pages(size: int) -> list[tuple[str, str]]:
    """(name, url) of what is measured; ids are those the loader wrote."""
    from tracking.models import CardOrder, Issuer, OperationEvent

    issuer = Issuer.objects.get(issuer_id=ISSUERS[1])
    middle = size // 2
    shipped = CardOrder.objects.filter(production_status="CARD_SHIPPED", id__gte=middle).first()
    stale_order_id = (
        OperationEvent.objects.filter(outcome="stale", order_id__gte=middle)
        .order_by("order_id")
        .values_list("order_id", flat=True)
        .first()
    )
    file_part = f"_{middle // 1000:06d}."
    base = "/admin/tracking/cardorder/"
    return [
        ("orders list, unfiltered", base),
        ("orders list, page 20", base + "?p=20"),
        ("orders list, Exceptions queue", base + "?queue=exceptions"),
        ("orders list, Stuck queue", base + "?queue=stuck"),
        (
            "orders list, issuer + production status",
            f"{base}?issuer={issuer.pk}&production_status=CARD_PROD_ONGOING",
        ),
        ("orders list, carrier + D1 error", base + "?carrier=fedex&has_error=no"),
        ("orders list, reconcile reason = gap", base + "?reconcile_reason=gap"),
        (
            "orders list, first seen in a 2-day range",
            f"{base}?first_event_at_from=2000-01-01&first_event_at_to=2000-01-02",
        ),
        ("search by card id (opens the order)", f"{base}?q={shipped.card_id}"),
        ("search by tracking number (opens the order)", f"{base}?q={shipped.tracking_number}"),
        ("search by part of a file name", f"{base}?q={file_part}"),
        ("order page (6 events)", f"{base}{shipped.pk}/change/"),
        ("order page (with a stale event)", f"{base}{stale_order_id}/change/"),
        ("dashboard", "/admin/"),
        ("/metrics (gauges read, no cache)", "/metrics"),
    ]


def first_seen_range(url: str) -> str:
    """Two days that hold orders, whatever day the benchmark runs."""
    import datetime as dt

    from django.utils import timezone

    start = timezone.localdate() - dt.timedelta(days=40)
    return url.replace("2000-01-01", start.isoformat()).replace(
        "2000-01-02", (start + dt.timedelta(days=1)).isoformat()
    )


class DatabaseClock:
    """An execute wrapper that adds up the time spent in the database, at full precision."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.queries = 0

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - began
            self.queries += 1


def measure(client, url: str, runs: int) -> tuple[int, list[float], list[float], int]:
    """Status, server times, database times (ms) and query count of `runs` requests."""
    from django.db import connection

    for _ in range(2):  # warm this page's data and templates
        client.get(url)
    durations, db_times = [], []
    for _ in range(runs):
        clock = DatabaseClock()
        with connection.execute_wrapper(clock):
            began = time.perf_counter()
            response = client.get(url)
            durations.append((time.perf_counter() - began) * 1000)
        db_times.append(clock.seconds * 1000)
    if response.status_code not in (200, 302):
        raise SystemExit(f"{url} answered {response.status_code}")
    return response.status_code, durations, db_times, clock.queries


def run_pages(size: int, runs: int, only: list[str] = ()) -> list[Timing]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_AUTHORIZATION="Bearer bench-metrics")
    client.force_login(user)
    urls = [
        (name, first_seen_range(url))
        for name, url in pages(size)
        if not only or any(part in name for part in only)
    ]
    for _, url in urls:  # one pass over every page first: after a load the caches are cold
        client.get(url)
    timings = []
    for name, url in urls:
        status, durations, db_times, queries = measure(client, url, runs)
        timing = Timing(
            page=name,
            url=url,
            status=status,
            median_ms=statistics.median(durations),
            best_ms=min(durations),
            db_ms=statistics.median(db_times),
            queries=queries,
        )
        print(
            f"  {name:48} {timing.median_ms:8.1f} ms (best {timing.best_ms:6.1f}, "
            f"database {timing.db_ms:6.1f}) {queries:2d} queries [{status}]",
            flush=True,
        )
        timings.append(timing)
    return timings


# ---------------------------------------------------------------------------- report


def events_count() -> int:
    """The events table's row count as PostgreSQL estimates it after VACUUM ANALYZE."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", ["tracking_operationevent"]
        )
        return cursor.fetchone()[0]


def report(
    results: dict[int, list[Timing]],
    loads: dict[int, float | None],
    runs: int,
    exports: dict[int, ExportFigures],
    events: dict[int, int],
) -> str:
    sizes = sorted(results)
    head = " | ".join(f"{size:,} orders ({events[size] / 1e6:.1f}M events)" for size in sizes)
    lines = [
        "## Admin",
        "",
        "Server time of the back-office pages on PostgreSQL, measured in-process with Django's",
        f"test client by `bench/admin_bench.py`: median of {runs} requests after two warm-up",
        "requests; in brackets the part of it spent in the database; then the number of",
        "queries (session and user included). A 302 is a search that opens the order directly.",
        "Each size has its own database (`bench_admin_<size>`), loaded with set-based SQL:",
        "70 % shipped, 24 % open (one in ten of those past its stage's threshold), 2.5 %",
        "failed, 1.5 % cancelled, 2 % flagged for reconciliation; about 5 events per order.",
        "",
        f"| page | {head} |",
        "|---|" + "---|" * len(sizes),
    ]
    for index, timing in enumerate(results[sizes[0]]):
        cells = []
        for size in sizes:
            t = results[size][index]
            redirect = " (302)" if t.status == 302 else ""
            cells.append(f"{t.median_ms:.0f} ms ({t.db_ms:.1f} ms db), {t.queries} q{redirect}")
        lines.append(f"| {timing.page} | " + " | ".join(cells) + " |")
    if exports:
        lines.append(
            "| CSV export of every order | "
            + " | ".join(
                f"{exports[size].rows_per_s:,.0f} rows/s, peak {exports[size].peak_rss_mb:.0f} MB "
                f"({exports[size].tenth_rss_mb:.0f} MB after a tenth)"
                if size in exports
                else ""
                for size in sizes
            )
            + " |"
        )
    lines += [
        "",
        "Load time (orders, events, a week of deliveries, indexes, VACUUM ANALYZE): "
        + ", ".join(
            f"{size:,} orders {loads[size]:.0f} s"
            if loads[size] is not None
            else f"{size:,} orders reused"
            for size in sizes
        )
        + ".",
        "",
        "Why the list stays flat as the table grows: no `COUNT(*)` (the paginator does not",
        "count; 'Next' is offered while a page is full), every filter on an indexed column or",
        "a partial index (`order_exception_recent` for Exceptions; `order_status_stage` for",
        "the per-stage thresholds of Stuck), ids matched with equality on their btree indexes,",
        "file names through a trigram GIN index on `UPPER(input_file_name)`. The dashboard",
        "counts open orders per stage and final stages over 24 h / 7 days, each from one",
        "range of the `(production_status, stage_entered_at)` index (index-only scans): it",
        "grows with the number of open orders, not with the history. Most of the remaining",
        "server time is template rendering (the theme's list and filter templates), which",
        "does not depend on the number of orders.",
        "",
        f"Machine: {os.cpu_count()} cores shared by client, server and PostgreSQL "
        f"{postgres_version()}; default PostgreSQL settings (shared_buffers 128 MB). Other",
        "work may share the machine (the run takes no lock on it), so a single figure can",
        "move by a third from one run to the next; the first pass over the pages after a",
        "load (cold caches) is not counted.",
        "",
    ]
    return "\n".join(lines)


def postgres_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0].split()[0]


def write_section(path: Path, section: str) -> None:
    """Replace the "## Admin" section of `path` (or add it), leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    lines = text.splitlines()
    try:
        start = lines.index("## Admin")
    except ValueError:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "\n".join(lines[end:])
    path.write_text(
        "\n".join(lines[:start]) + "\n" + section + ("\n" + rest + "\n" if rest else "")
    )


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


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def export_child() -> None:
    """Stream the admin's CSV export of every order; print rows/s and memory as JSON."""
    import json
    import resource

    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.get(username="bench")
    client = Client()
    client.force_login(user)
    start_rss = rss_mb()
    began = time.perf_counter()
    response = client.get("/admin/tracking/cardorder/export.csv")
    rows, samples, next_sample = -1, [], 50_000  # the header is not a row
    for chunk in response.streaming_content:
        rows += chunk.count(b"\n")
        if rows >= next_sample:
            samples.append((rows, rss_mb()))
            next_sample += 50_000
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "start_rss_mb": start_rss,
                "samples": samples,
                "peak_rss_mb": peak,
            }
        )
    )


@dataclass
class ExportFigures:
    rows: int
    rows_per_s: float
    start_rss_mb: float
    tenth_rss_mb: float
    peak_rss_mb: float


def measure_export(name: str) -> ExportFigures:
    """Run the export in a child process (its own peak memory) against database `name`."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--export-child", name],
        env=os.environ,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    samples = figures["samples"] or [(figures["rows"], figures["peak_rss_mb"])]
    tenth = next((rss for rows, rss in samples if rows >= figures["rows"] / 10), samples[-1][1])
    result = ExportFigures(
        rows=figures["rows"],
        rows_per_s=figures["rows"] / figures["seconds"],
        start_rss_mb=figures["start_rss_mb"],
        tenth_rss_mb=tenth,
        peak_rss_mb=figures["peak_rss_mb"],
    )
    print(
        f"  CSV export: {result.rows:,} rows at {result.rows_per_s:,.0f} rows/s; resident "
        f"memory {result.start_rss_mb:.0f} MB before, {result.tenth_rss_mb:.0f} MB after a "
        f"tenth, peak {result.peak_rss_mb:.0f} MB",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--write", type=Path, help="the benchmarks file to update")
    parser.add_argument(
        "--reuse", action="store_true", help="keep a database that already holds the size"
    )
    parser.add_argument("--load-only", action="store_true", help="load the sizes; measure nothing")
    parser.add_argument("--no-export", action="store_true", help="skip the CSV export")
    parser.add_argument(
        "--only", nargs="+", default=[], help="measure only pages whose name contains one of these"
    )
    parser.add_argument(
        "--export-sizes", type=int, nargs="+", help="export only at these sizes (default: all)"
    )
    parser.add_argument("--export-child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    base_url = os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    if not base_url.startswith("postgres"):
        sys.exit("the benchmark needs PostgreSQL (DATABASE_URL=postgres://...)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("CACHE_URL", "locmemcache://")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    # /metrics is read by a token, and its gauges computed on every request (no cache).
    os.environ.setdefault("METRICS_TOKEN", "bench-metrics")
    os.environ.setdefault("METRICS_DB_CACHE_SECONDS", "0")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "")
    import django

    django.setup()
    from tracking.models import CardOrder

    if args.export_child:
        from django.db import connection

        connection.settings_dict["NAME"] = args.export_child
        export_child()
        return

    results: dict[int, list[Timing]] = {}
    loads: dict[int, float | None] = {}
    exports: dict[int, ExportFigures] = {}
    events: dict[int, int] = {}
    for size in sorted(args.sizes):
        name = use_database(base_url, size)
        if args.reuse and CardOrder.objects.count() == size:
            print(f"{name}: reusing {size:,} orders", flush=True)
            loads[size] = recorded_load_seconds()
        else:
            print(f"{name}: loading {size:,} orders", flush=True)
            reset()
            loads[size] = load(start=1, stop=size)
            record_load_seconds(loads[size])
        if args.load_only:
            continue
        print(f"measuring at {size:,} orders", flush=True)
        results[size] = run_pages(size, args.runs, only=args.only)
        if not args.no_export and (not args.export_sizes or size in args.export_sizes):
            exports[size] = measure_export(name)
        events[size] = events_count()
    if args.load_only:
        return
    section = report(results, loads, args.runs, exports, events)
    print("\n" + section)
    if args.write:
        write_section(args.write, section)
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()
