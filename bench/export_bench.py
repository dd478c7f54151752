"""The order export at volume: a million rows as .xlsx and as CSV, in constant memory.

1. fills DATABASE_URL with N card orders of one bench issuer (`BENCHEXP01`; a second run
   reuses them), a third of them delivered so that the delivered-on subquery runs;
2. for each size (10k, 100k, ... up to N) and each format, runs the export in a fresh process,
   the way the admin view does (`orders_xlsx_file`, `orders_csv_lines`), and prints its rows per
   second and the process's peak RSS. Constant memory shows as the same peak at every size.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench \
        .venv/bin/python bench/export_bench.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ISSUER_ID = "BENCHEXP01"
SEED_BATCH = 10_000
PG_SEED = """
INSERT INTO tracking_cardorder (
    issuer_id, card_id, operation_id, operation, operation_status, production_status,
    production_rank, is_terminal, issuer_request_id, input_file_name, production_site, carrier,
    tracking_number, shipment_status, stage_first_seen, stage_entered_at, first_event_at,
    last_event_at, created_at, updated_at)
SELECT %s, lpad(n::text, 10, '0'), 'op-' || lpad(n::text, 12, '0'), 'PRODUCE', 'SUCCESSFUL',
    'CARD_SHIPPED', 70, true, lpad(n::text, 8, '0'), 'BATCH_' || lpad((n / 1000)::text, 6, '0')
    || '.csv', 'PERSO-SITE-JP-01', 'japan-post', lpad(n::text, 12, '0'),
    CASE WHEN n %% 3 = 0 THEN 'DELIVERED' ELSE 'IN_TRANSIT' END,
    jsonb_build_object('CARD_SHIPPED', now() - (n %% 50000) * interval '1 minute'),
    now() - (n %% 50000) * interval '1 minute', now() - (n %% 50000) * interval '1 minute'
    - interval '2 days', now() - (n %% 50000) * interval '1 minute', now(),
    now() - (n %% 50000) * interval '1 minute'
FROM generate_series(%s, %s) AS n
"""


def django_setup(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_DEBUG", "false")
    import django

    django.setup()


def seed(rows: int) -> None:
    """Bring the bench issuer to `rows` orders (adds only what is missing)."""
    import datetime as dt

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from tracking.models import CardOrder, Issuer

    call_command("migrate", verbosity=0)
    issuer, _ = Issuer.objects.get_or_create(issuer_id=ISSUER_ID, defaults={"name": "Export bench"})
    have = CardOrder.objects.filter(issuer=issuer).count()
    now = timezone.now()
    started = time.perf_counter()
    if connection.vendor == "postgresql" and rows > have:
        # The same rows, written by the server: a million in seconds rather than minutes.
        with connection.cursor() as cursor:
            cursor.execute(PG_SEED, [issuer.pk, have, rows - 1])
        have = rows
    for start in range(have, rows, SEED_BATCH):
        batch = []
        for n in range(start, min(start + SEED_BATCH, rows)):
            shipped = now - dt.timedelta(minutes=n % 50_000)
            batch.append(
                CardOrder(
                    issuer=issuer,
                    card_id=f"{n:010d}",  # all digits, leading zeros: ids that must stay text
                    operation_id=f"op-{n:012d}",
                    operation="PRODUCE",
                    operation_status="SUCCESSFUL",
                    production_status="CARD_SHIPPED",
                    production_rank=70,
                    is_terminal=True,
                    issuer_request_id=f"{n:08d}",
                    input_file_name=f"BATCH_{n // 1000:06d}.csv",
                    production_site="PERSO-SITE-JP-01",
                    carrier="japan-post",
                    tracking_number=f"{n:012d}",
                    shipment_status="DELIVERED" if n % 3 == 0 else "IN_TRANSIT",
                    stage_first_seen={"CARD_SHIPPED": shipped.isoformat()},
                    stage_entered_at=shipped,
                    first_event_at=shipped - dt.timedelta(days=2),
                    last_event_at=shipped,
                    updated_at=shipped,
                )
            )
        CardOrder.objects.bulk_create(batch, batch_size=2000)
    if rows > have:
        print(f"seeded {rows - have} orders in {time.perf_counter() - started:.0f} s", flush=True)


def export_once(file_format: str, rows: int) -> dict:
    """One export of the first `rows` bench orders, in this process; its figures."""
    from django.conf import settings

    from tracking.models import CardOrder
    from tracking.selectors.export import orders_csv_lines, orders_xlsx_file

    queryset = CardOrder.objects.filter(issuer__issuer_id=ISSUER_ID).order_by("pk")
    pks = list(queryset.values_list("pk", flat=True)[rows - 1 : rows])
    queryset = queryset.filter(pk__lte=pks[0]) if pks else queryset
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if file_format == "xlsx":
        path, written = orders_xlsx_file(
            queryset=queryset, chunk_size=settings.ADMIN_EXPORT_CHUNK_SIZE
        )
        size = os.path.getsize(path)
        os.unlink(path)
    else:
        written, size = -1, 0
        for line in orders_csv_lines(
            queryset=queryset, chunk_size=settings.ADMIN_EXPORT_CHUNK_SIZE
        ):
            written += 1
            size += len(line.encode())
    seconds = time.perf_counter() - started
    return {
        "format": file_format,
        "rows": written,
        "seconds": round(seconds, 1),
        "rows_per_s": round(written / seconds),
        "file_mb": round(size / 1e6, 1),
        "rss_before_mb": round(baseline_kb / 1024),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default="xlsx,csv")
    parser.add_argument("--one", nargs=2, metavar=("FORMAT", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", f"sqlite:///{ROOT / '.local' / 'bench.sqlite3'}")
    django_setup(database_url)
    if args.one:
        print(json.dumps(export_once(args.one[0], int(args.one[1]))), flush=True)
        return
    seed(args.rows)
    sizes = [n for n in (10_000, 100_000, 1_000_000, 10_000_000) if n < args.rows] + [args.rows]
    print(
        f"{'format':6} {'rows':>9} {'seconds':>8} {'rows/s':>8} {'file MB':>8} "
        f"{'RSS before':>10} {'peak RSS':>9}"
    )
    for file_format in args.formats.split(","):
        for size in sizes:
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--one", file_format, str(size)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "DATABASE_URL": database_url},
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            print(
                f"{r['format']:6} {r['rows']:>9} {r['seconds']:>8} {r['rows_per_s']:>8} "
                f"{r['file_mb']:>8} {r['rss_before_mb']:>8} MB {r['peak_rss_mb']:>6} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
