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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import (  # noqa: E402  (bench/ is on the path: this file runs as a script)
    ISSUERS,
    load,
    record_load_seconds,
    recorded_load_seconds,
    reset,
    use_database,
)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portal_perf_admin"


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
