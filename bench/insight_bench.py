#!/usr/bin/env python
"""Benchmark of the insight pages and their rollup on PostgreSQL at 1,000,000 orders.

Reuses `bench/fill.py`'s loader (orders, events, deliveries written with set-based SQL),
gathers 100,000 orders of one issuer into one file, then times: the rollup refresh (full, after
1 % of the orders changed, and with nothing changed) and the pages (file page of the 100k-order
file, files list, heat-map, a heat-map cell, the likely-late queue, the list sorted by predicted
ship date, the read API list), server time in-process, median of several requests.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_insight \\
        .venv/bin/python bench/insight_bench.py --size 1000000 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import admin_bench  # noqa: E402
import fill  # noqa: E402

BIG_FILE = "BIG_FILE_100K.csv"
SECTION = "## Insight"
KEPT_SUBSECTION = "### Prediction error"


def gather_big_file(size: int, orders: int = 100_000) -> int:
    """Rename the file of `orders` orders of the second issuer (ids ≡ 1 mod 5) to BIG_FILE."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE tracking_cardorder SET input_file_name = %s WHERE id IN ("
            " SELECT id FROM tracking_cardorder WHERE id %% 5 = 1 AND id > %s"
            " ORDER BY id LIMIT %s)",
            [BIG_FILE, size // 4, orders],
        )
        changed = cursor.rowcount
        cursor.execute("VACUUM (ANALYZE) tracking_cardorder")
    return changed


def touch(share: float) -> int:
    """Mark a share of the orders as just updated, as new events would."""
    from django.db import connection

    step = round(1 / share)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE tracking_cardorder SET updated_at = now() WHERE id %% %s = 3", [step]
        )
        return cursor.rowcount


def timed_refresh(label: str, **kwargs) -> tuple[str, float, str, dict[str, float]]:
    from tracking.insight.refresh import insight_refresh

    result = insight_refresh(**kwargs)
    detail = (
        f"{result.orders:,} orders re-spanned, {result.stats:,} statistics, "
        f"{result.files:,} files, {result.predictions:,} open orders predicted "
        f"({result.predictions_written:,} predictions written, "
        f"{result.predictions_removed:,} removed)"
    )
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.phases.items())
    print(f"  refresh, {label}: {result.seconds:.1f} s ({detail}; {phases})", flush=True)
    return label, result.seconds, detail, result.phases


def timed_files_full() -> tuple[str, float, str, dict[str, float]]:
    from django.utils import timezone

    from tracking.insight.production_files import files_refresh

    began = time.perf_counter()
    files = files_refresh(changed_since=None, now=timezone.now())
    seconds = time.perf_counter() - began
    print(f"  files, full: {seconds:.1f} s ({files:,} files)", flush=True)
    return "every file's figures (part of a full run)", seconds, f"{files:,} files", {}


def list_column(user, name: str) -> int:
    """The changelist's `o` index of a column as this user sees the list: the admin counts
    the action checkbox, when the user has actions, as column 0."""
    from django.contrib import admin
    from django.test import RequestFactory

    from tracking.models import CardOrder

    model_admin = admin.site._registry[CardOrder]
    request = RequestFactory().get("/admin/tracking/cardorder/")
    request.user = user
    names = list(model_admin.get_list_display(request))
    if model_admin.get_actions(request):
        names.insert(0, "action_checkbox")
    return names.index(name)


def pages(user) -> list[tuple[str, str]]:
    from django.utils.http import urlencode

    from tracking.models import Issuer

    issuer = Issuer.objects.get(issuer_id=fill.ISSUERS[1])
    column = list_column(user, "predicted_ship")
    files = "/admin/tracking/productionfile/"
    return [
        (
            "file page, 100,000-order file",
            f"{files}file/?{urlencode({'issuer': issuer.pk, 'name': BIG_FILE})}",
        ),
        ("files list (newest first)", files),
        ("files list, sorted by share finished", f"{files}?o=4"),
        ("heat-map, 7 days", f"{files}heatmap/?window=7"),
        ("heat-map, 30 days", f"{files}heatmap/?window=30"),
        (
            "heat-map cell (orders behind it)",
            f"{files}heatmap/cell/?window=30&stage=CARD_PROD_ONGOING&site=PERSO-SITE-EU-02",
        ),
        ("likely-late queue", "/admin/tracking/cardorder/?queue=likely_late"),
        (
            "orders list sorted by predicted ship",
            f"/admin/tracking/cardorder/?queue=open&o={column}",
        ),
        (
            "orders list sorted by predicted ship, latest first",
            f"/admin/tracking/cardorder/?queue=open&o=-{column}",
        ),
        ("read API list (100 orders, with predictions)", "/api/v1/orders/"),
    ]


def run_pages(runs: int) -> list[tuple[str, float, float, int, int]]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    found = []
    for name, url in pages(user):
        client.get(url)  # cold caches after the load and the refresh
        status, durations, db_times, queries = admin_bench.measure(client, url, runs)
        median, db = statistics.median(durations), statistics.median(db_times)
        print(
            f"  {name:48} {median:8.1f} ms (database {db:6.1f}) {queries:2d} queries [{status}]",
            flush=True,
        )
        found.append((name, median, db, queries, status))
    return found


def report(size: int, load: float | None, refreshes, timings, runs: int) -> str:
    lines = [
        SECTION,
        "",
        f"`bench/insight_bench.py` at {size:,} orders on PostgreSQL, with `bench/admin_bench.py`'s",
        "data (70 % shipped over 90 days, 24 % open, five issuers, three sites, five carriers)",
        "and 100,000 orders of one issuer gathered into one file. Server time in-process with",
        f"Django's test client, median of {runs} requests after warm-up; in brackets the part",
        "spent in the database.",
        "",
        "| page | time |",
        "|---|---|",
    ]
    for name, median, db, queries, status in timings:
        lines.append(f"| {name} | {median:.0f} ms ({db:.1f} ms db), {queries} q [{status}] |")
    lines += [
        "",
        "Rollup refresh (`insight_refresh`, the beat task):",
        "",
        "| refresh | time | phases | what it did |",
        "|---|---|---|---|",
    ]
    for label, seconds, detail, phases in refreshes:
        split = ", ".join(f"{name} {took:.1f} s" for name, took in phases.items()) or "—"
        lines.append(f"| {label} | {seconds:.1f} s | {split} | {detail} |")
    lines += [
        "",
        "The file page reads one range of the `(issuer, input_file_name, production_status,",
        "stage_entered_at)` index, which on PostgreSQL also carries the columns the page counts",
        "(finished, the exception rule, first and last event, the order id): one grouped count",
        "over the file, one index probe per open stage for its median entry time, one count",
        "and one page of laggards, one aggregate of the predictions of the file's open orders.",
        "The files list and the heat-map read the rollup tables (`ProductionFile`, `StageStat`),",
        "a few rows each, whatever the number of orders. The orders list sorts by",
        "`CardOrder.predicted_ship_date`, the p50 the refresh copies onto the order, on a",
        "partial index over the open orders. The full refresh (first run, or",
        "`manage.py insight_refresh --full`) derives the spans of every order; later runs only",
        "those of orders updated since the last one, then recompute the percentiles, predict",
        "every open order again and write only the predictions, order dates and file dates",
        "that changed.",
        "",
        f"Machine: {os.cpu_count()} cores shared with other work; PostgreSQL "
        f"{admin_bench.postgres_version()}, default settings. Load time of the data: "
        + (f"{load:.0f} s." if load else "reused."),
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    lines = text.splitlines()
    if SECTION not in lines:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    start = lines.index(SECTION)
    # Up to the next section, keeping the backtest's subsection (bench/prediction_backtest.py).
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].startswith("## ") or lines[i] == KEPT_SUBSECTION
        ),
        len(lines),
    )
    rest = "\n".join(lines[end:])
    path.write_text(
        "\n".join(lines[:start]) + "\n" + section + ("\n" + rest + "\n" if rest else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--reuse", action="store_true", help="keep a database holding the size")
    parser.add_argument("--load-only", action="store_true", help="load the data, measure nothing")
    parser.add_argument(
        "--spans-present",
        action="store_true",
        help="the stage spans are already derived (skip the full span rebuild)",
    )
    args = parser.parse_args()

    base_url = os.environ.setdefault(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_insight"
    )
    if not base_url.startswith("postgres"):
        sys.exit("the benchmark needs PostgreSQL (DATABASE_URL=postgres://...)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("CACHE_URL", "locmemcache://")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    import django

    django.setup()
    from tracking.models import CardOrder

    name = fill.use_database(base_url, args.size)
    if args.reuse and CardOrder.objects.count() == args.size:
        print(f"{name}: reusing {args.size:,} orders", flush=True)
        load = fill.recorded_load_seconds()
    else:
        print(f"{name}: loading {args.size:,} orders", flush=True)
        fill.reset()
        load = fill.load(start=1, stop=args.size)
        fill.record_load_seconds(load)
        print(f"  {gather_big_file(args.size):,} orders gathered into {BIG_FILE}", flush=True)
    if args.load_only:
        return

    if args.spans_present:
        # The spans were derived by an earlier (interrupted) full run: time the rest of a
        # first run (every file's figures), then start the incremental runs from now.
        refreshes = [timed_files_full()]
        from django.utils import timezone

        from tracking.models import RollupState

        RollupState.objects.update_or_create(name="insight", defaults={"watermark": timezone.now()})
    else:
        refreshes = [timed_refresh("full (every order)", full=True)]
    changed = touch(0.01)
    refreshes.append(timed_refresh(f"incremental, {changed:,} orders changed"))
    refreshes.append(timed_refresh("incremental, nothing changed"))
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("tracking_stagespan", "tracking_orderprediction", "tracking_productionfile"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    timings = run_pages(args.runs)
    section = report(args.size, load, refreshes, timings, args.runs)
    print("\n" + section)
    if args.write:
        write_section(args.write, section)
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()
