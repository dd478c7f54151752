"""Registered orders at volume: bulk registration through the API beside the raw insert rate, and
the silent-order sweep's time to pick its batch among a million registered orders.

1. starts the portal (gunicorn, one worker) against DATABASE_URL and registers N orders through
   `POST /api/v1/orders/` in lists of REGISTRATION_BULK_MAX, timed; then the same number through
   `orders_register` in this process (no HTTP, no JSON), and a plain multi-row INSERT of the same
   columns (no conflict handling, no checks): the raw insert rate;
2. (PostgreSQL) fills the table up to M registered orders that D1 never spoke about, all silent,
   and times what the sweep does each tick: pick its batch (`orders_claim_for_reconcile`, FOR
   UPDATE SKIP LOCKED) and the due list alone, with PostgreSQL's plan.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench \
        .venv/bin/python bench/registration_bench.py
    ... --orders 100000 --silent 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from reconcile_rate import free_port, wait_for  # noqa: E402


def django_setup(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_DEBUG", "false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def new_issuer(prefix: str):
    from tracking.models import Issuer

    issuer_id = prefix + "".join(random.choices(string.ascii_uppercase, k=10 - len(prefix)))
    return Issuer.objects.create(issuer_id=issuer_id, name=f"bench {issuer_id}")


def rows(issuer_id: str, start: int, n: int) -> list[dict]:
    return [
        {
            "issuer_id": issuer_id,
            "card_id": f"card-{i:09d}",
            "operation_id": f"op-{i:09d}",
            "issuer_request_id": f"req-{i:09d}",
            "input_file_name": "BENCH_ORDERS.csv",
            "due_date": "2026-12-31",
        }
        for i in range(start, start + n)
    ]


def api_rate(args, database_url: str, work: Path) -> float:
    """Orders per second through POST /api/v1/orders/ (lists of REGISTRATION_BULK_MAX)."""
    import requests
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tracking.models import IssuerGrant
    from tracking.services.roles import OPERATORS, roles_ensure

    issuer = new_issuer("BA")
    user = get_user_model().objects.create_user(
        f"bench-{issuer.issuer_id.lower()}", password="x", is_staff=True
    )
    user.groups.add(roles_ensure()[OPERATORS])
    IssuerGrant.objects.create(user=user, issuer=issuer)
    token = Token.objects.create(user=user).key
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": database_url,
        "CACHE_URL": os.environ.get("CACHE_URL") or f"filecache://{work / 'cache'}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--workers",
            "1",
            "--timeout",
            "300",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", timeout=60)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        size = settings.REGISTRATION_BULK_MAX
        started = time.perf_counter()
        for start in range(0, args.orders, size):
            answer = session.post(
                f"http://127.0.0.1:{port}/api/v1/orders/",
                json=rows(issuer.issuer_id, start, min(size, args.orders - start)),
                timeout=300,
            )
            assert answer.status_code == 201, answer.text[:300]
        return args.orders / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)


def service_rate(args) -> float:
    """Orders per second through `orders_register` (checks and upsert, no HTTP)."""
    from django.conf import settings
    from django.db import transaction

    from tracking.services.audit import Actor
    from tracking.services.registration import orders_register
    from tracking.services.registration_rows import registration_check

    issuer = new_issuer("BS")
    size = settings.REGISTRATION_BULK_MAX
    started = time.perf_counter()
    issuers = {issuer.issuer_id: issuer}
    for start in range(0, args.orders, size):
        checked = [
            registration_check(r, issuers=issuers)[0]
            for r in rows(issuer.issuer_id, start, min(size, args.orders - start))
        ]
        with transaction.atomic():
            orders_register(registrations=checked, actor=Actor.of_command("bench"))
    return args.orders / (time.perf_counter() - started)


def raw_insert_rate(args) -> float:
    """A plain multi-row INSERT of the same columns, 1,000 rows a statement, no conflict check."""
    from django.db import connection, transaction
    from django.utils import timezone

    issuer = new_issuer("BR")
    now = timezone.now()
    sql_row = "(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    started = time.perf_counter()
    for start in range(0, args.orders, 10_000):
        with transaction.atomic(), connection.cursor() as cursor:
            for chunk in range(start, min(start + 10_000, args.orders), 1000):
                n = min(1000, args.orders - chunk)
                params: list = []
                for r in rows(issuer.issuer_id, chunk, n):
                    params += [
                        issuer.pk,
                        r["card_id"],
                        r["operation_id"],
                        now,
                        r["issuer_request_id"],
                        r["input_file_name"],
                        r["due_date"],
                        now,
                        now,
                    ]
                cursor.execute(
                    "INSERT INTO tracking_cardorder (issuer_id, card_id, operation_id,"
                    " registered_at, issuer_request_id, input_file_name, due_date, created_at,"
                    f" updated_at) VALUES {', '.join([sql_row] * n)}",
                    params,
                )
    return args.orders / (time.perf_counter() - started)


def silent_sweep(args) -> None:
    """Fill up to --silent registered, silent orders; time the sweep's pick of one batch."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from tracking.models import CardOrder
    from tracking.selectors.order_queues import silent_q
    from tracking.services.reconcile import orders_claim_for_reconcile, orders_due_for_reconcile

    if connection.vendor != "postgresql":
        print("silent sweep: PostgreSQL only (set DATABASE_URL); skipped")
        return
    have = CardOrder.objects.filter(event_count=0, registered_at__isnull=False).count()
    missing = max(args.silent - have, 0)
    if missing:
        issuer = new_issuer("BM")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for start in range(0, missing, 200_000):
                n = min(200_000, missing - start)
                cursor.execute(
                    "INSERT INTO tracking_cardorder (issuer_id, card_id, operation_id,"
                    " registered_at, created_at, updated_at)"
                    " SELECT %s, 'silent-' || g, 'op-silent-' || g,"
                    " now() - interval '2 days' - g * interval '1 second', now(), now()"
                    " FROM generate_series(%s, %s) AS g",
                    [issuer.pk, start, start + n - 1],
                )
            cursor.execute("ANALYZE tracking_cardorder")
        print(f"filled {missing} silent orders in {time.perf_counter() - started:.0f} s")
    total = CardOrder.objects.count()
    now = timezone.now()
    silent = CardOrder.objects.filter(silent_q(now=now)).count()
    batch = settings.RECONCILE_SWEEP_BATCH

    due_ms, claim_ms = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        list(
            orders_due_for_reconcile(now=timezone.now(), silent=False).values_list("id", flat=True)[
                :batch
            ]
        )
        due_ms.append((time.perf_counter() - started) * 1000)
        with transaction.atomic():
            started = time.perf_counter()
            claimed = orders_claim_for_reconcile(limit=batch, now=timezone.now())
            claim_ms.append((time.perf_counter() - started) * 1000)
            assert len(claimed) == batch, len(claimed)
            transaction.set_rollback(True)  # leave the orders due for the next round
    queryset = orders_due_for_reconcile(now=timezone.now(), silent=True).values_list(
        "id", flat=True
    )[:batch]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    print(f"orders in the table: {total}; silent: {silent}; batch: {batch}")
    print(f"due list, not silent:    median {statistics.median(due_ms):8.1f} ms")
    print(f"claim one batch:         median {statistics.median(claim_ms):8.1f} ms")
    print("plan of the silent due list:\n" + plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="orders to register")
    parser.add_argument("--silent", type=int, default=1_000_000, help="registered orders in all")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-registration-"))
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{work / 'portal.sqlite3'}"
    django_setup(database_url)

    api = None if args.skip_api else api_rate(args, database_url, work)
    service = service_rate(args)
    raw = raw_insert_rate(args)
    print(f"registration of {args.orders} orders ({database_url.split(':')[0]}):")
    if api is not None:
        print(f"  through the API:        {api:9.0f} orders/s  ({api / raw:.2f} of raw)")
    print(f"  orders_register:        {service:9.0f} orders/s  ({service / raw:.2f} of raw)")
    print(f"  raw multi-row INSERT:   {raw:9.0f} orders/s")
    silent_sweep(args)


if __name__ == "__main__":
    main()
