"""Webhook ingest rate and latency on PostgreSQL + gunicorn, beside the raw insert rate.

Measured, not asserted. One run:
1. a fresh database, migrated, with one issuer;
2. gunicorn with production settings; wrk posts bodies of 1 and of 50 new card orders each,
   with a bearer token from the token endpoint and the certificate header a trusted proxy sends
   (so the figures include D1's authentication, as in production);
3. pgbench inserts one comparable row per transaction (an event-sized JSON row) with the same
   number of connections for the same time;
then prints items per second, p50/p99 latency, non-2xx answers and the ratio to the raw rate.

Usage: .venv/bin/python bench/ingest.py [--duration 15] [--connections 8] [--workers 4]
Needs PostgreSQL on 127.0.0.1:5432 (user postgres), wrk and pgbench (Debian packages).
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
DB = "bench_ingest"
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


def run_wrk(url: str, *, batch: int, duration: int, connections: int, token: str) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--port", type=int, default=18099)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB}")
    psql(
        "CREATE TABLE bench_raw (id bigserial primary key, card_id varchar(48), "
        "fingerprint varchar(64) unique, payload jsonb, received_at timestamptz)",
        DB,
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": f"{PG}/{DB}",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "memory://",
        # wrk plays the mTLS proxy: it sends the verified-subject header from 127.0.0.1.
        "D1_TRUSTED_PROXIES": "127.0.0.1/32",
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [python, "manage.py", "create_issuer", ISSUER, "--name", "Bench"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    server = subprocess.Popen(
        [
            str(Path(python).parent / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{args.port}/notifications/d1/v2/issuers/{ISSUER}/cards"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/api/schema/", timeout=1)
                break
            except OSError as exc:
                if getattr(exc, "code", None):
                    break
                time.sleep(0.2)
        token = d1_token(python=python, env=env, port=args.port)
        wrk = {"duration": args.duration, "connections": args.connections, "token": token}
        run_wrk(url, batch=1, **{**wrk, "duration": 3})  # warm-up
        single = run_wrk(url, batch=1, **wrk)
        batched = run_wrk(url, batch=50, **wrk)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    raw = run_pgbench(duration=args.duration, connections=args.connections)

    print(f"\nraw PostgreSQL insert (pgbench, {args.connections} connections): {raw:,.0f} rows/s")
    print(
        f"{'batch':>5} {'items/s':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'non-2xx':>7} {'ratio to raw':>12}"
    )
    for row in (single, batched):
        row["ratio_to_raw"] = row["items_per_s"] / raw
        print(
            f"{row['batch']:>5} {row['items_per_s']:>9,.0f} {row['requests_per_s']:>8,.0f} "
            f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} {row['non_2xx']:>7} "
            f"{row['ratio_to_raw']:>12.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"raw_rows_per_s": raw, "runs": [single, batched]}))


if __name__ == "__main__":
    main()
