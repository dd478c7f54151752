"""Webhook ingest rate and latency on PostgreSQL + gunicorn, beside a bare view and raw inserts.

Measured, not asserted. One run:
1. a fresh database (`portal_perf_ingest`), migrated, with one issuer and a D1 client;
2. gunicorn with production settings (JSON request logs on, written to a file); wrk posts
   bodies of 1 and of 50 new card orders each with a bearer token from the token endpoint and
   the certificate header a trusted proxy sends, so every POST pays D1's authentication;
3. the bare-view anchor on the same server (`bench/bare_urls.py`): parse the body, insert one
   row per item, nothing else;
4. the same webhook runs on a server without the middleware fast path and the token memory
   (WEBHOOK_FAST_PATH=false, D1_TOKEN_CHECK_CACHE_SECONDS=0): the figures before them; or,
   with --before-tree DIR, on a server of the code checked out in DIR, same settings;
5. a storm of copies of one stored item, and the webhook paced at a steady peak rate
   (`--peak-single`, `--peak-batched` items/s) rather than flat out;
6. the same webhook runs with INGEST_FOLD=inline (each POST folds what it stored right after
   its commit, in the request: the default);
7. pgbench inserting one comparable row per transaction, same connections, same time;
then prints items per second, p50/p99 latency, non-2xx answers and the ratios.

Except in the inline runs the webhook stores and a Celery worker folds (the projector,
`tracking/intake/projector.py`, INGEST_FOLD=celery): the worker runs beside gunicorn on a Redis
broker (`BENCH_BROKER_URL`), with beat's sweep and a shared Redis cache (`BENCH_CACHE_URL`),
as in production. After each webhook run the bench waits until nothing is left to
fold, then reads the fold lag of the run's events from the database (stored → folded: p50 and
p99).

Usage: .venv/bin/python bench/ingest.py [--duration 10] [--connections 8] [--workers 4]
       [--before-tree DIR] [--peak-single 400] [--peak-batched 1000]
Needs PostgreSQL on 127.0.0.1:5432 (user postgres), Redis, wrk and pgbench (Debian packages).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"
DB = os.environ.get("BENCH_DB", "portal_perf_ingest")
ISSUER = "BENCHISS01"
RAW_SQL = """
INSERT INTO bench_raw (card_id, fingerprint, payload, received_at)
VALUES (md5(random()::text), md5(random()::text),
 '{"operationId":"op-1","operation":"PRODUCE","status":"PENDING","startTime":"2026-03-02T09:15:04.120Z","cardId":"c-1","issuerRequestId":"req-1","details":{"status":"CARD_PROD_REQUESTED"}}'::jsonb,
 now());
"""


def psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-q", "-c", sql], check=True
    )


def run_wrk(
    url: str,
    *,
    batch: int,
    duration: int,
    connections: int,
    token: str,
    mode: str = "new",
    items_per_s: float = 0,
) -> dict:
    """One wrk run; `items_per_s` paces it to about that rate (0: as fast as answered)."""
    pause_ms = int(connections * batch * 1000 / items_per_s) if items_per_s else 0
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "ingest_items.lua"),
            url,
            "--",
            str(batch),
            secrets.token_hex(4),
            token,
            mode,
            str(pause_ms),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests_per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def percentile(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "batch": batch,
        "requests_per_s": requests_per_s,
        "items_per_s": requests_per_s * batch,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def run_pgbench(*, duration: int, connections: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(RAW_SQL)
        script.flush()
        out = subprocess.run(
            [
                "pgbench",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-n",
                "-c",
                str(connections),
                "-j",
                "2",
                "-T",
                str(duration),
                "-f",
                script.name,
                DB,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


FOLD_LAG_SQL = """
SELECT count(*),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - first_received_at)),
  percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - first_received_at))
FROM tracking_operationevent WHERE order_id IS NOT NULL AND first_received_at >= '{since}'
"""
WAITING_SQL = (
    "SELECT (SELECT count(*) FROM tracking_operationevent WHERE applied_at IS NULL "
    "AND order_id IS NOT NULL) + (SELECT count(*) FROM tracking_eventcopy)"
)


def psql_value(sql: str, db: str = DB) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atq", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def fold_lag(since: str, *, timeout: float = 120.0) -> dict:
    """Wait until nothing waits to be folded; the fold lag of the events stored since `since`.

    The lag of an event is from its arrival to the fold that applied it (copies fold nothing).
    """
    started = time.monotonic()
    while int(psql_value(WAITING_SQL) or 0) and time.monotonic() - started < timeout:
        time.sleep(0.2)
    drained = time.monotonic() - started
    count, p50, p99 = psql_value(FOLD_LAG_SQL.format(since=since)).split("|")
    return {
        "folded_events": int(count),
        "fold_lag_p50_ms": float(p50 or 0) * 1000,
        "fold_lag_p99_ms": float(p99 or 0) * 1000,
        "drained_after_s": drained,
    }


def d1_token(*, python: str, env: dict, port: int) -> str:
    """A D1 client for the bench issuer, and a token from the portal's own token endpoint."""
    out = subprocess.run(
        [python, "manage.py", "create_d1_client", ISSUER],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    values = dict(line.split("=", 1) for line in out.split())
    pair = f"{values['client_id']}:{values['client_secret']}".encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/authz/d1/v1/oauth2/token",
        data=b"grant_type=client_credentials",
        headers={
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
            "X-SSL-Client-S-DN": "CN=bench-d1-client",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access_token"]


class Server:
    """gunicorn serving the portal with `env`, its output appended to `log`."""

    def __init__(
        self, *, python: str, env: dict, port: int, workers: int, log, tree: Path = ROOT
    ) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [
                str(Path(python).parent / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            cwd=tree,
            env=env,
            stdout=log,
            stderr=log,
        )
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return
            except OSError as exc:
                if getattr(exc, "code", None):
                    return
                time.sleep(0.2)
        raise SystemExit("gunicorn did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--port", type=int, default=18099)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--before-tree",
        type=Path,
        help="a checkout of earlier code (e.g. `git archive <commit> | tar -x -C DIR`): the "
        "'before' runs serve it with today's settings, instead of today's code without the "
        "middleware fast path and the token memory",
    )
    parser.add_argument(
        "--peak-single", type=int, default=400, help="items/s of the paced single-item run"
    )
    parser.add_argument(
        "--peak-batched", type=int, default=1000, help="items/s of the paced 50-item run"
    )
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB}")
    psql(
        "CREATE TABLE bench_raw (id bigserial primary key, card_id varchar(48), "
        "fingerprint varchar(64), payload jsonb, received_at timestamptz)",
        DB,
    )
    log_path = Path(tempfile.gettempdir()) / "portal_perf_ingest_server.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.bare_settings",
        "DATABASE_URL": f"{PG}/{DB}",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/5"),
        "CELERY_TASK_DEFAULT_QUEUE": f"bench-{secrets.token_hex(4)}",
        "INGEST_FOLD": "celery",
        # Shared by every process, as in production: the projector's "one run queued" mark is
        # cleared by the worker that starts the run, and the webhook's failure counts are read
        # there on every POST.
        "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/6"),
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="portal_perf_prom_"),
        # wrk plays the mTLS proxy: it sends the verified-subject header from 127.0.0.1.
        "D1_TRUSTED_PROXIES": "127.0.0.1/32",
        "WEBHOOK_FAST_PATH": "true",
    }
    before_env = {**env, "WEBHOOK_FAST_PATH": "false", "D1_TOKEN_CHECK_CACHE_SECONDS": "0"}
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [python, "manage.py", "create_issuer", ISSUER, "--name", "Bench"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    hook_path = f"/notifications/d1/v2/issuers/{ISSUER}/cards"
    bare_path = f"/notifications/bench/{ISSUER}/cards"
    server_args = {"python": python, "port": args.port, "workers": args.workers}
    runs: dict[str, dict] = {}
    before_tree = ROOT
    if args.before_tree:
        before_env, before_tree = env, args.before_tree.resolve()

    def measured(url: str, **options) -> dict:
        # Each run starts from fresh statistics: the tables grow from nothing during the
        # bench, and a plan made on an empty table's statistics (a scan of every order of the
        # issuer per card) would be measured instead of the code; autovacuum does this in use.
        psql("VACUUM ANALYZE", DB)
        since = psql_value("SELECT now()")
        row = run_wrk(url, **options)
        if "/notifications/d1/" in url:
            row.update(fold_lag(since))
        return row

    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [
                *(str(Path(python).parent / "celery"), "-A", "config", "worker", "-c", "2"),
                *("--loglevel", "WARNING", "-Q", env["CELERY_TASK_DEFAULT_QUEUE"]),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        # Beat as in production: the projector's sweep folds what a wake-up missed.
        beat = subprocess.Popen(
            [
                *(str(Path(python).parent / "celery"), "-A", "config", "beat"),
                *("--loglevel", "WARNING", "--schedule", str(log_path.with_suffix(".beat"))),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        server = Server(env=before_env, log=log, tree=before_tree, **server_args)
        try:
            token = d1_token(python=python, env=env, port=args.port)
            wrk = {"duration": args.duration, "connections": args.connections, "token": token}
            run_wrk(server.url(hook_path), batch=1, **{**wrk, "duration": 3})  # warm-up
            runs["webhook before, 1"] = measured(server.url(hook_path), batch=1, **wrk)
            runs["webhook before, 50"] = measured(server.url(hook_path), batch=50, **wrk)
        finally:
            server.stop()
        server = Server(env=env, log=log, **server_args)
        try:
            for path in (hook_path, bare_path):  # warm-up
                run_wrk(server.url(path), batch=1, **{**wrk, "duration": 3})
            for batch in (1, 50):
                runs[f"bare view, {batch}"] = measured(server.url(bare_path), batch=batch, **wrk)
                runs[f"webhook, {batch}"] = measured(server.url(hook_path), batch=batch, **wrk)
            runs["storm of copies, 1"] = measured(
                server.url(hook_path), batch=1, **wrk, mode="copies"
            )
            # At a steady peak rather than flat out: the fold lag readers see in use.
            for batch, rate in ((1, args.peak_single), (50, args.peak_batched)):
                runs[f"webhook at {rate:,} items/s, {batch}"] = measured(
                    server.url(hook_path), batch=batch, **wrk, items_per_s=rate
                )
        finally:
            server.stop()
        # The default: each POST folds what it stored right after its commit, in the request.
        server = Server(env={**env, "INGEST_FOLD": "inline"}, log=log, **server_args)
        try:
            run_wrk(server.url(hook_path), batch=1, **{**wrk, "duration": 3})  # warm-up
            for batch in (1, 50):
                runs[f"webhook inline, {batch}"] = measured(
                    server.url(hook_path), batch=batch, **wrk
                )
            runs["storm of copies inline, 1"] = measured(
                server.url(hook_path), batch=1, **wrk, mode="copies"
            )
        finally:
            server.stop()
            for process in (worker, beat):
                process.terminate()
                process.wait(timeout=30)
    raw = run_pgbench(duration=args.duration, connections=args.connections)
    log_lines = sum(1 for _ in log_path.open())

    print(f"\nraw PostgreSQL insert (pgbench, {args.connections} connections): {raw:,.0f} rows/s")
    print(f"server log: {log_lines:,} JSON lines in {log_path}")
    print(
        f"{'run':34} {'items/s':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'non-2xx':>7} {'to bare':>7} {'to raw':>7} {'lag p50':>8} {'lag p99':>8}"
    )
    for name, row in runs.items():
        bare = runs.get(f"bare view, {row['batch']}")
        row["ratio_to_bare"] = row["items_per_s"] / bare["items_per_s"] if bare else None
        row["ratio_to_raw"] = row["items_per_s"] / raw
        to_bare = f"{row['ratio_to_bare']:.2f}" if row["ratio_to_bare"] else ""
        print(
            f"{name:34} {row['items_per_s']:>9,.0f} {row['requests_per_s']:>8,.0f} "
            f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} {row['non_2xx']:>7} "
            f"{to_bare:>7} {row['ratio_to_raw']:>7.2f}"
            + (
                f" {row['fold_lag_p50_ms']:>6.0f}ms {row['fold_lag_p99_ms']:>6.0f}ms"
                if "fold_lag_p50_ms" in row
                else ""
            )
        )
    if args.json:
        args.json.write_text(json.dumps({"raw_rows_per_s": raw, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
