#!/usr/bin/env python
"""Index budget of the hot tables: what each index of card orders and events serves, and costs.

Loads card orders (a million by default) with their events, their D1 messages and the rarer
states the queues look for (superseded, registered and silent, cancel accepted, carrier
problems, acknowledged exceptions) into a dedicated PostgreSQL database with set-based SQL,
then:

1. runs the real code paths that read the two tables (every admin queue and filter, the
   searches, the order and event pages, the dashboard, /metrics, the read API, the webhook
   intake, the reconciliation sweep, the production-file pages) with every query recorded;
2. asks PostgreSQL for the plan of each recorded query and notes which indexes it uses;
3. for each index of `tracking_cardorder` and `tracking_operationevent` (from pg_indexes:
   the models' Meta indexes, foreign keys, unique constraints, and the trigram and covering
   indexes the migrations add), times the queries that use it with the index and without it
   (`BEGIN; DROP INDEX ...; EXPLAIN ANALYZE ...; ROLLBACK`) and says what the plan uses instead;
4. measures the write cost of each index: inserting new orders, updating orders as an applied
   event does (not HOT: `updated_at` is indexed), inserting events; each with no secondary
   index, with every index, and with that one index alone (rolled back every time).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_index_budget \\
        .venv/bin/python bench/index_budget.py --orders 1000000 [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portal_index_budget"
TABLES = ("tracking_cardorder", "tracking_operationevent")


# ---------------------------------------------------------------------------- loading


def load_sql() -> dict[str, str]:
    """The benchmarks' loader (`bench/fill.py`), widened to the columns the queues and indexes read.

    Issuers are skewed (half of the orders for one issuer), exceptions carry the time they were
    flagged, shipped orders a carrier class, open ones a predicted ship date, and every event
    the D1 message that brought it (one message per issuer and minute).
    """
    import fill as base

    def replaced(text: str, old: str, new: str) -> str:
        if old not in text:
            raise SystemExit(f"bench/fill.py changed: {old!r} not found")
        return text.replace(old, new)

    plan = replaced(
        base.PLAN_SQL,
        "(i %% 5) + 1 AS issuer_no",
        "(ARRAY[1, 1, 1, 1, 1, 2, 2, 3, 4, 5])[1 + (i / 7) %% 10] AS issuer_no",
    )
    orders = replaced(
        base.ORDERS_SQL,
        "last_reconciled_at, last_reconcile_outcome, created_at, updated_at)",
        "last_reconciled_at, last_reconcile_outcome, created_at, updated_at, shipment_class, "
        "exception_changed_at, predicted_ship_date)",
    )
    orders = replaced(
        orders,
        "0, NULL, '', p.created, p.entered\nFROM bench_plan",
        """0, NULL, '', p.created, p.entered,
    CASE WHEN p.status <> 'CARD_SHIPPED' THEN ''
         WHEN p.m < 497 THEN 'delivered' WHEN p.m < 499 THEN 'exception'
         WHEN p.m < 500 THEN 'returned' WHEN p.m < 520 THEN 'out_for_delivery'
         WHEN p.m < 530 THEN 'failed_attempt' ELSE 'in_transit' END,
    CASE WHEN p.fate IN ('data_exception', 'prod_exception', 'unknown', 'conflict')
              OR (p.status = 'CARD_SHIPPED' AND p.m BETWEEN 497 AND 499) THEN p.entered END,
    CASE WHEN p.fate IN ('open', 'unknown', 'gap')
         THEN (p.created + interval '4 days' + (p.i %% 5) * interval '1 day')::date END
FROM bench_plan""",
    )
    events = replaced(
        base.EVENTS_SQL,
        "SELECT o.issuer_id, o.id, NULL, md5",
        "SELECT o.issuer_id, o.id, "
        "(floor(extract(epoch FROM t.at) / 60)::bigint * 8 + o.issuer_id), md5",
    )
    return {"plan": plan, "orders": orders, "events": events, "stale": base.STALE_SQL}


# One D1 message per (minute, issuer) the events name, with the id the events already carry.
DELIVERIES_SQL = """
INSERT INTO tracking_notificationdelivery (
    id, received_at, issuer_id, issuer_id_in_path, source, correlation_id, client_identity,
    remote_addr, content_type, byte_size, item_count, new_count, duplicate_count,
    rejected_count, status_code, error_code, error, body, body_truncated)
SELECT e.delivery_id, min(e.first_received_at), min(e.issuer_id), min(iss.issuer_id),
       'webhook', md5(e.delivery_id::text), 'CN=d1-notifications', '10.0.0.1',
       'application/json', count(*) * 420, count(*), count(*), 0, 0, 204, '', '', '', false
FROM tracking_operationevent e JOIN tracking_issuer iss ON iss.id = e.issuer_id
WHERE e.delivery_id IS NOT NULL
GROUP BY e.delivery_id
"""

# The rarer states, each on a slice of the orders the plan made (ids by i % 1000 = m).
RARE_SQL = [
    # A newer operation of the same card took the place of one open order in 200.
    """UPDATE tracking_cardorder SET superseded_by_id = id + 1, superseded_at = stage_entered_at
       WHERE id %% 1000 BETWEEN 700 AND 939 AND id %% 200 = 3 AND id < %(stop)s""",
    # An accepted pull & change CANCEL that D1 has not confirmed yet: one open order in 1000.
    """UPDATE tracking_cardorder SET cancel_accepted_at = stage_entered_at,
              reconcile_next_at = now() + interval '10 minutes'
       WHERE id %% 1000 = 941""",
    # D1 answered 404 for the card: an exception the portal raised, one order in 2000.
    """UPDATE tracking_cardorder SET exception_reason = 'd1_not_found',
              d1_not_found_since = stage_entered_at, exception_changed_at = stage_entered_at
       WHERE id %% 2000 = 945""",
    # Staff took one exception in four.
    """UPDATE tracking_cardorder SET assignee_id = %(user_id)s
       WHERE exception_changed_at IS NOT NULL AND id %% 4 = 0""",
    # Half of the data exceptions are acknowledged.
    """INSERT INTO tracking_orderacknowledgement (order_id, user_id, note, created_at)
       SELECT id, %(user_id)s, 'Asked the issuer to fix the name', exception_changed_at
                + interval '1 hour'
       FROM tracking_cardorder WHERE id %% 1000 BETWEEN 940 AND 949""",
    # Orders the issuers registered that D1 has not spoken about: 1 % of the orders, a tenth
    # of them silent for longer than the portal waits.
    """INSERT INTO tracking_cardorder (
           id, issuer_id, card_id, operation_id, operation, is_terminal, issuer_request_id,
           input_file_name, production_site, due_date, registered_at, registration,
           created_at, updated_at, event_count, predicted_ship_date)
       SELECT %(stop)s + g, iss.id, 'card-r' || lpad(g::text, 9, '0'), 'op-r' || md5(g::text),
              'PRODUCE', false, 'req-r' || g,
              'BATCH_REG_' || lpad((g / 500)::text, 6, '0') || '.csv', '',
              (now() + interval '5 days')::date,
              now() - CASE WHEN g %% 10 = 0 THEN interval '3 days'
                           ELSE (g %% 600) * interval '1 minute' END,
              jsonb_build_object('cardId', 'card-r' || g), now() - (g %% 600) * interval '1 minute',
              now() - (g %% 600) * interval '1 minute', 0, (now() + interval '4 days')::date
       FROM generate_series(1, greatest(%(stop)s / 100, 1)) AS g
       JOIN tracking_issuer iss ON iss.issuer_id = 'BENCHBANK2'""",
    # A crash left the last events of a few orders stored but not applied.
    """UPDATE tracking_operationevent SET applied_at = NULL
       WHERE order_id > %(stop)s - 20 AND order_id <= %(stop)s""",
]


def load(*, size: int) -> float:
    """Write the orders, events, D1 messages and rare states; rebuild indexes; analyze."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from fill import BIG_TABLES, drop_indexes, reset, step

    reset()
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    sql = load_sql()
    params = {"start": 1, "stop": size, "issuers": ISSUERS, "user_id": user.pk}
    began = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        dropped = [drop_indexes(cursor, table) for table in BIG_TABLES]
        cursor.execute(sql["plan"], params)
        step("orders", cursor, sql["orders"], params)
        step("events", cursor, sql["events"], params)
        step("stale events", cursor, sql["stale"], params)
        step("D1 messages", cursor, DELIVERIES_SQL, params)
        for statement in RARE_SQL:
            step(
                statement.split()[0].lower() + " " + statement.split()[1], cursor, statement, params
            )
        for table in ("tracking_cardorder", "tracking_notificationdelivery"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        began_indexes = time.perf_counter()
        for statements in dropped:
            for statement in statements:
                cursor.execute(statement)
        print(f"  indexes: {time.perf_counter() - began_indexes:.1f} s", flush=True)
    with connection.cursor() as cursor:
        for table in (
            *BIG_TABLES,
            "tracking_notificationdelivery",
            "tracking_orderacknowledgement",
        ):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    return time.perf_counter() - began


from index_budget_paths import ISSUERS, Recorded, Rollback, record_paths  # noqa: E402

# ---------------------------------------------------------------------------- plans and times


def plan_of(cursor, query: Recorded, *, analyze: bool) -> dict:
    options = "ANALYZE, TIMING OFF, FORMAT JSON" if analyze else "FORMAT JSON"
    cursor.execute(f"EXPLAIN ({options}) {query.sql}", query.params)
    value = cursor.fetchone()[0]
    return (json.loads(value) if isinstance(value, str) else value)[0]


def indexes_in(node: dict) -> set[str]:
    found = {node["Index Name"]} if "Index Name" in node else set()
    # INSERT ... ON CONFLICT names the unique index it checks against.
    found |= set(node.get("Conflict Arbiter Indexes", ()))
    for child in node.get("Plans", ()):
        found |= indexes_in(child)
    return found


def timed(cursor, query: Recorded, runs: int) -> tuple[float, set[str]]:
    """Median time (ms) of `runs` EXPLAIN ANALYZE, and the indexes the plan used.

    Each run is undone at once (a savepoint rolled back): the intake's statements write, some
    behind a WITH, and the data must stay as loaded.
    """
    times, used = [], set()
    for _ in range(runs):
        cursor.execute("SAVEPOINT budget_run")
        try:
            plan = plan_of(cursor, query, analyze=True)
        finally:
            cursor.execute("ROLLBACK TO SAVEPOINT budget_run")
        times.append(plan["Execution Time"] + plan["Planning Time"])
        used = indexes_in(plan["Plan"])
    return statistics.median(times), used


@dataclass
class Index:
    name: str
    table: str
    definition: str
    kind: str  # Meta index, unique constraint, primary key, foreign key, migration SQL
    size_mb: float
    constraint: str = ""  # the constraint that owns it, dropped instead of the index
    served: list[tuple[str, float, float, str]] = field(default_factory=list)
    insert_share: float = 0.0  # of the time to insert new rows with every index
    update_share: float = 0.0
    insert_us: float = 0.0  # extra µs per row
    update_us: float = 0.0


def hot_indexes() -> list[Index]:
    from django.db import connection

    from tracking.models import CardOrder, OperationEvent

    meta = {index.name for model in (CardOrder, OperationEvent) for index in model._meta.indexes}
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT i.tablename, i.indexname, i.indexdef,
                      pg_relation_size(format('%%I', i.indexname)::regclass) / 1048576.0,
                      c.conname, c.contype
               FROM pg_indexes i
               LEFT JOIN pg_constraint c ON c.conname = i.indexname
                                        AND c.conrelid = i.tablename::regclass
               WHERE i.tablename = ANY(%s) ORDER BY i.tablename, i.indexname""",
            [list(TABLES)],
        )
        rows = cursor.fetchall()
    indexes = []
    for table, name, definition, size_mb, constraint, contype in rows:
        if contype == "p":
            kind = "primary key"
        elif contype == "u":
            kind = "unique constraint"
        elif name in meta:
            kind = "Meta index"
        elif name.startswith(table + "_"):
            kind = "foreign key"
        else:
            kind = "migration SQL"
        indexes.append(Index(name, table, definition, kind, float(size_mb), constraint or ""))
    return indexes


def drop_statement(index: Index) -> str:
    if index.constraint:
        return f'ALTER TABLE {index.table} DROP CONSTRAINT "{index.constraint}" CASCADE'
    return f'DROP INDEX "{index.name}"'


def measure_queries(queries: list[Recorded], indexes: list[Index], runs: int) -> None:
    """Each query's time and indexes as loaded; then, per index, its queries without it."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '30s'")
        for query in queries:
            try:
                with transaction.atomic():
                    timed(cursor, query, 1)  # warm the cache
                    query.ms_with, query.uses = timed(cursor, query, runs)
            except Exception as exc:
                print(f"  skipped ({query.label}): {str(exc).splitlines()[0]}", flush=True)
                query.uses = set()
    for index in indexes:
        users = [q for q in queries if index.name in q.uses]
        # Per page, its slowest query that uses the index: the one that says most.
        by_label: dict[str, Recorded] = {}
        for query in users:
            if query.label not in by_label or query.ms_with > by_label[query.label].ms_with:
                by_label[query.label] = query
        chosen = sorted(by_label.values(), key=lambda q: -q.ms_with)
        if index.kind == "primary key" or not chosen:
            index.served = [(q.label, q.ms_with, float("nan"), "") for q in chosen[:6]]
            continue
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = '30s'")
                cursor.execute(drop_statement(index))
                for query in chosen[:6]:
                    try:
                        with transaction.atomic():
                            ms, used = timed(cursor, query, runs)
                        instead = ", ".join(sorted(used)) or "sequential scan"
                    except Exception as exc:
                        ms, instead = float("inf"), str(exc).splitlines()[0][:60]
                    index.served.append((query.label, query.ms_with, ms, instead))
                raise Rollback
        except Rollback:
            pass
        worst = max(index.served, key=lambda s: s[2] / max(s[1], 0.01))
        print(
            f"  {index.name:44} {len(users):3d} queries; worst without: {worst[0]} "
            f"{worst[1]:.1f} -> {worst[2]:.1f} ms",
            flush=True,
        )


# ---------------------------------------------------------------------------- write cost


def writes(size: int, rows: int) -> dict[str, tuple[str, str]]:
    """(table, SQL) of the writes measured; each writes about `rows` rows spread over the table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'tracking_cardorder' AND column_name <> 'id' "
            "ORDER BY ordinal_position"
        )
        order_columns = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'tracking_operationevent' AND column_name <> 'id' "
            "ORDER BY ordinal_position"
        )
        event_columns = [row[0] for row in cursor.fetchall()]
    order_overrides = {
        "card_id": "'w' || card_id",
        "created_at": "now()",
        "updated_at": "now()",
    }
    event_overrides = {
        "fingerprint": "md5('w' || fingerprint) || md5(fingerprint)",
        "first_received_at": "now()",
        "last_received_at": "now()",
    }
    # Rows spread evenly over the table (every n-th id); the time includes finding them.
    step = max(size // rows, 1)
    events_step = max(step * 4, 1)

    def select(columns, overrides):
        return ", ".join(overrides.get(c, c) for c in columns)

    return {
        "insert orders": (
            "tracking_cardorder",
            f"INSERT INTO tracking_cardorder ({', '.join(order_columns)}) "
            f"SELECT {select(order_columns, order_overrides)} FROM tracking_cardorder "
            f"WHERE id % {step} = 1 AND id <= {size}",
        ),
        # What applying one event does to its order: new stage time, counters, fingerprint.
        "update orders": (
            "tracking_cardorder",
            "UPDATE tracking_cardorder SET updated_at = now(), last_event_at = now(), "
            "stage_entered_at = now(), event_count = event_count + 1, "
            "state_fingerprint = md5(state_fingerprint) "
            f"WHERE id % {step} = 2 AND id <= {size}",
        ),
        "insert events": (
            "tracking_operationevent",
            f"INSERT INTO tracking_operationevent ({', '.join(event_columns)}) "
            f"SELECT {select(event_columns, event_overrides)} FROM tracking_operationevent "
            f"WHERE id % {events_step} = 3",
        ),
    }


def measure_writes(indexes: list[Index], size: int, rows: int, repeats: int) -> dict:
    """Per write: time with no secondary index, with all, and with each one alone (min)."""
    from django.db import connection, transaction

    results: dict[str, dict[str, float]] = defaultdict(dict)
    counts: dict[str, int] = {}
    secondary = {
        t: [i for i in indexes if i.table == t and i.kind != "primary key"] for t in TABLES
    }

    def run(table: str, keep: set[str], sql: str, key: str, write: str) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                for index in secondary[table]:
                    if index.name not in keep:
                        cursor.execute(drop_statement(index))
                began = time.perf_counter()
                cursor.execute(sql)
                seconds = time.perf_counter() - began
                counts[write] = cursor.rowcount
                raise Rollback
        except Rollback:
            pass
        previous = results[write].get(key)
        results[write][key] = seconds if previous is None else min(previous, seconds)

    for write, (table, sql) in writes(size, rows).items():
        everything = {i.name for i in secondary[table]}
        for _ in range(repeats):
            run(table, everything, sql, "all", write)
            run(table, set(), sql, "none", write)
            for index in secondary[table]:
                run(table, {index.name}, sql, index.name, write)
        figures = results[write]
        print(
            f"  {write}: {counts[write]:,} rows, {figures['none'] * 1000:.0f} ms bare, "
            f"{figures['all'] * 1000:.0f} ms with every index",
            flush=True,
        )
        for index in secondary[table]:
            extra = max(figures[index.name] - figures["none"], 0.0)
            share = extra / figures["all"]
            per_row = extra / max(counts[write], 1) * 1e6
            if write == "update orders":
                index.update_share, index.update_us = share, per_row
            else:
                index.insert_share, index.insert_us = share, per_row
    return {w: dict(f, rows=counts[w]) for w, f in results.items()}


# ---------------------------------------------------------------------------- report


def report(indexes: list[Index], write_figures: dict, size: int, events: int, runs: int) -> str:
    lines = [
        "| index | table | kind | size | serves (page/query) | ms with | ms without (plan "
        "instead) | write cost share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index in indexes:
        table = "order" if index.table == "tracking_cardorder" else "event"
        if index.served:
            served = "<br>".join(
                f"{label}: {with_:.1f} → "
                + ("-" if without != without else f"{without:.1f} ({instead})")
                for label, with_, without, instead in index.served[:4]
            )
            if len(index.served) > 4:
                served += f"<br>(+{len(index.served) - 4} more)"
        else:
            served = "no recorded query"
        # The with/without columns are the query that loses most without the index.
        worst = max(index.served, key=lambda s: s[2] - s[1] if s[2] == s[2] else -1, default=None)
        best_with, worst_without = (worst[1], worst[2]) if worst else (float("nan"),) * 2
        if table == "order":
            cost = f"insert {index.insert_share:.1%}, update {index.update_share:.1%}"
        else:
            cost = f"insert {index.insert_share:.1%}"
        if index.kind == "primary key":
            cost = "(kept in every run)"
        lines.append(
            f"| `{index.name}` | {table} | {index.kind} | {index.size_mb:.0f} MB | {served} | "
            f"{best_with:.1f} | {worst_without:.1f} | {cost} |"
        )
    lines.append("")
    for write, figures in write_figures.items():
        lines.append(
            f"- {write}: {figures['rows']:,} rows in {figures['none'] * 1000:.0f} ms with no "
            f"secondary index, {figures['all'] * 1000:.0f} ms with every index"
        )
    lines.append(
        f"\n{size:,} orders, {events:,} events; times are EXPLAIN ANALYZE (planning + "
        f"execution, median of {runs}), write shares the extra time of the index alone over "
        "the bare table, as a share of the time with every index."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep a database already loaded")
    parser.add_argument("--runs", type=int, default=3, help="EXPLAIN ANALYZE runs per query")
    parser.add_argument("--write-rows", type=int, default=10_000, help="rows per measured write")
    parser.add_argument("--write-repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only", nargs="+", default=[], help="record only paths whose label holds one of these"
    )
    parser.add_argument("--no-writes", action="store_true", help="skip the write cost")
    args = parser.parse_args()

    url = os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    if not url.startswith("postgres"):
        sys.exit("the benchmark needs PostgreSQL (DATABASE_URL=postgres://...)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("CACHE_URL", "locmemcache://")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("METRICS_TOKEN", "bench-metrics")
    os.environ.setdefault("METRICS_DB_CACHE_SECONDS", "0")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "")
    import django

    django.setup()
    from admin_bench import events_count
    from django.core.management import call_command
    from fill import ensure_database

    from tracking.models import CardOrder

    began = time.perf_counter()
    ensure_database(url)
    call_command("migrate", verbosity=0)
    expected = args.orders + max(args.orders // 100, 1)
    if args.reuse and CardOrder.objects.count() >= expected:
        print(f"reusing {expected:,} orders", flush=True)
    else:
        print(f"loading {args.orders:,} orders", flush=True)
        print(f"  loaded in {load(size=args.orders):.0f} s", flush=True)
    print("recording the code paths' queries", flush=True)
    queries = record_paths(args.orders, only=args.only)
    indexes = hot_indexes()
    print(f"timing {len(indexes)} indexes with and without", flush=True)
    measure_queries(queries, indexes, args.runs)
    print("write cost", flush=True)
    write_figures = (
        {}
        if args.no_writes
        else measure_writes(indexes, args.orders, args.write_rows, args.write_repeats)
    )
    table = report(indexes, write_figures, expected, events_count(), args.runs)
    print("\n" + table)
    print(f"\nwhole run: {time.perf_counter() - began:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "indexes": [vars(i) for i in indexes],
                    "writes": write_figures,
                    "queries": [
                        {
                            "label": q.label,
                            "sql": q.sql[:2000],
                            "ms": q.ms_with,
                            "uses": sorted(q.uses),
                        }
                        for q in queries
                    ],
                },
                default=str,
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
