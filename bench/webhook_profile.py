"""CPU cost of one webhook POST, in-process, beside the bare view: where the time goes.

Wall-clock rates on a shared 2-core machine move with whatever else runs; the CPU time a
process spends per request does much less. This script serves the portal in-process (Django's
test client, production settings, JSON logs, bearer token and certificate header on every POST,
PostgreSQL) and prints the CPU milliseconds per request of the bare view and of the webhook,
with single items and 50-item batches, with and without the middleware fast path and the token
memory, the CPU its PostgreSQL backend spent on them, then the functions that take the most of
a webhook POST (cProfile).

Usage: .venv/bin/python bench/webhook_profile.py [--requests 200] [--now-only] [--db NAME]
       [--drop-indexes LIKE]
(`--now-only` measures the bare view and the webhook as it ships, without the "before" rows.)
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import pstats
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ISSUER = "BENCHISS01"
SUBJECT = "CN=bench-d1-client"


def body(batch: int, nonce: str, counter: int) -> bytes:
    operations = []
    for i in range(batch):
        card = f"{nonce}-{counter}-{i}"
        operations.append(
            {
                "operationId": f"op-{card}",
                "operation": "PRODUCE",
                "status": "PENDING",
                "startTime": "2026-03-02T09:15:04.120Z",
                "cardId": card,
                "issuerRequestId": f"req-{card}",
                "details": {"status": "CARD_PROD_REQUESTED"},
            }
        )
    return json.dumps({"operations": operations}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--db", default="portal_perf_profile", help="database (made afresh)")
    parser.add_argument(
        "--now-only", action="store_true", help="only the bare view and the webhook as it ships"
    )
    parser.add_argument("--profile-batch", type=int, default=1, help="items per profiled POST")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile list")
    parser.add_argument(
        "--drop-indexes",
        metavar="LIKE",
        help="drop the card orders' and events' indexes whose names match this SQL LIKE pattern "
        "(unique ones kept) after migrating: what those indexes cost a POST",
    )
    args = parser.parse_args()
    db = args.db

    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=True)
    subprocess.run([*psql, f"CREATE DATABASE {db}"], check=True)
    subprocess.run(
        [
            *psql,
            "CREATE TABLE bench_raw (id bigserial primary key, card_id varchar(48), "
            "fingerprint varchar(64), payload jsonb, received_at timestamptz)",
            "-d",
            db,
        ],
        check=True,
    )
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.bare_settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "CACHE_URL": "locmemcache://",
            "CELERY_BROKER_URL": "memory://",
            # The request path only: the projector's task is queued, never run here.
            "INGEST_FOLD": "celery",
            "PROMETHEUS_MULTIPROC_DIR": "",
            "D1_TRUSTED_PROXIES": "127.0.0.1/32",
            "WEBHOOK_FAST_PATH": "true",
        }
    )
    # The request logs are written, as in production, but not to this terminal.
    log = open(Path("/tmp") / "portal_perf_profile.log", "w")  # noqa: SIM115
    os.dup2(log.fileno(), 2)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client, override_settings

    from tracking.d1.clients import d1_client_create
    from tracking.models import Issuer

    call_command("migrate", verbosity=0)
    if args.drop_indexes:
        from django.db import connection as setup_connection

        with setup_connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indexname FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
                "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.tablename IN "
                "('tracking_cardorder', 'tracking_operationevent') AND NOT x.indisunique "
                "AND i.indexname LIKE %s",
                [args.drop_indexes],
            )
            dropped = [name for (name,) in cursor.fetchall()]
            for name in dropped:
                cursor.execute(f'DROP INDEX "{name}"')
        print(f"dropped {len(dropped)} indexes: {', '.join(sorted(dropped))}", file=sys.__stdout__)
    issuer = Issuer.objects.create(issuer_id=ISSUER, name="Bench")
    credentials = d1_client_create(issuer=issuer)
    pair = f"{credentials.client_id}:{credentials.client_secret}".encode()
    token = (
        Client(REMOTE_ADDR="127.0.0.1")
        .post(
            "/authz/d1/v1/oauth2/token",
            "grant_type=client_credentials",
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION="Basic " + base64.b64encode(pair).decode(),
            HTTP_X_SSL_CLIENT_S_DN=SUBJECT,
        )
        .json()["access_token"]
    )
    headers = {
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_X_SSL_CLIENT_S_DN": SUBJECT,
    }
    hook = f"/notifications/d1/v2/issuers/{ISSUER}/cards"
    bare = f"/notifications/bench/{ISSUER}/cards"
    without_fast_path = [
        m for m in settings.MIDDLEWARE if m != "tracking.middleware.d1.WebhookFastPathMiddleware"
    ]

    from django.db import connection

    def backend_cpu() -> float:
        """CPU seconds of this process's PostgreSQL backend so far (Linux /proc, same host)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def measure(path: str, batch: int, *, fast: bool, remember: int) -> tuple[float, ...]:
        """CPU (this process, its PostgreSQL backend) and wall milliseconds per request."""
        middleware = settings.MIDDLEWARE if fast else without_fast_path
        with override_settings(MIDDLEWARE=middleware, D1_TOKEN_CHECK_CACHE_SECONDS=remember):
            client = Client(**headers)
            nonce = secrets.token_hex(4)
            for n in range(5):
                client.post(path, body(batch, nonce + "w", n), content_type="application/json")
            bodies = [body(batch, nonce, n) for n in range(args.requests)]
            with connection.cursor() as cursor:
                # The tables grew from nothing: plans as on a database whose statistics are
                # current, as autovacuum keeps them (a fresh table's may send a card id
                # lookup through every order of the issuer).
                cursor.execute("ANALYZE")
            backend = backend_cpu()
            cpu, wall = time.process_time(), time.perf_counter()
            for payload in bodies:
                response = client.post(path, payload, content_type="application/json")
                assert response.status_code == 204, response.content
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            backend = backend_cpu() - backend
            return tuple(x * 1000 / args.requests for x in (cpu, backend, wall))

    rows = []
    for batch in (1, 50):
        bare_cpu, bare_pg, bare_wall = measure(bare, batch, fast=True, remember=5)
        rows.append((f"bare view, {batch}", bare_cpu, bare_pg, bare_wall, bare_cpu, bare_pg))
        variants = [
            ("webhook before (full middleware, token looked up)", False, 0),
            ("webhook, fast path only", True, 0),
            ("webhook (fast path, token remembered)", True, 5),
        ]
        for label, fast, remember in variants[-1:] if args.now_only else variants:
            cpu, pg, wall = measure(hook, batch, fast=fast, remember=remember)
            rows.append((f"{label}, {batch}", cpu, pg, wall, bare_cpu, bare_pg))

    print(f"\n{args.requests} requests each; CPU of this process (client, server, driver) and of")
    print("its PostgreSQL backend (10 ms clock ticks over the whole run)")
    print(
        f"{'run':56} {'CPU ms/req':>10} {'PG ms/req':>9} {'wall ms/req':>11} "
        f"{'bare/this (CPU)':>15} {'(CPU+PG)':>8}"
    )
    for name, cpu, pg, wall, bare_cpu, bare_pg in rows:
        print(
            f"{name:56} {cpu:>10.2f} {pg:>9.2f} {wall:>11.2f} {bare_cpu / cpu:>15.2f} "
            f"{(bare_cpu + bare_pg) / (cpu + pg):>8.2f}"
        )

    profiler = cProfile.Profile(time.process_time)  # CPU, not the wait for the database
    client = Client(**headers)
    bodies = [body(args.profile_batch, "profile", n) for n in range(args.requests)]
    profiler.enable()
    for payload in bodies:
        client.post(hook, payload, content_type="application/json")
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    print(f"\n{args.profile_batch}-item webhook POST: CPU by function, own time first (cProfile)")
    print("\n".join(out.getvalue().splitlines()[: args.top + 35]))
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(r"/(tracking|django_structlog|rest_framework/views)/", args.top)
    print("\nthe same, the portal's own functions by cumulative CPU (cProfile slows every call):")
    print("\n".join(out.getvalue().splitlines()[: args.top + 35]))


if __name__ == "__main__":
    main()
