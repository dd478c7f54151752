"""Reconciliation against the D1 sandbox: orders reconciled per second, and how much it corrected.

1. starts the sandbox (`serve`) and the portal (gunicorn) on free ports, against DATABASE_URL
   (default: a fresh SQLite file in a temporary folder), with a new issuer for this run;
2. lets the sandbox feed N orders with drops, duplicates and reordering (`feed`), no worker;
3. counts the orders whose state is wrong (`verify`), then reconciles every order of the issuer
   with W threads calling `order_reconcile` in this process, and times it;
4. prints orders/s and the share of orders reconciliation corrected (drift) beside the sandbox's
   own count of dropped notifications, then checks with `verify` that nothing is left.

    .venv/bin/python bench/reconcile_rate.py --orders 1000 --workers 4
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/reconcile_rate.py
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import string
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from d1sandbox.testing import SandboxProcess  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5, allow_redirects=False)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="threads calling D1 at once")
    parser.add_argument("--drop", type=float, default=0.2)
    parser.add_argument("--duplicate", type=float, default=0.1)
    parser.add_argument("--reorder", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=0, help="added by the sandbox per call")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    issuer_id = "BENCH" + "".join(random.choices(string.ascii_uppercase, k=5))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{work / 'portal.sqlite3'}",
        "CACHE_URL": os.environ.get("CACHE_URL") or f"filecache://{work / 'cache'}",
        "D1_MAX_RETRIES": "2",
    }
    python = sys.executable
    children: list[subprocess.Popen] = []
    sandbox = None
    try:
        subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [python, "manage.py", "create_issuer", issuer_id, "--name", "Benchmark"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        keys = subprocess.run(
            [python, "-m", "d1sandbox", "keys", str(work / "keys")],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        key_lines = dict(line.split("=", 1) for line in keys.splitlines() if "=" in line)
        sandbox = SandboxProcess(
            keys_dir=work / "keys",
            state_path=work / "state.sqlite3",
            log_path=work / "sandbox.log",
            extra_args=["--latency-ms", str(args.latency_ms), "--log-level", "WARNING"],
        )
        env.update(
            D1_API_BASE_URL=sandbox.api_base_url,
            D1_TOKEN_URL=sandbox.token_url,
            D1_KEY_ID=key_lines["D1_KEY_ID"],
            D1_PRIVATE_KEY_PATH=key_lines["D1_PRIVATE_KEY_PATH"],
        )
        port = free_port()
        portal_url = f"http://127.0.0.1:{port}"
        web = subprocess.Popen(
            [
                python,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-control-socket",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        children.append(web)
        wait_for(f"{portal_url}/api/schema/")

        print(f"feeding {args.orders} orders to {issuer_id} ...", flush=True)
        feed = subprocess.run(
            [
                python,
                "-m",
                "d1sandbox",
                "feed",
                "--portal",
                portal_url,
                "--issuer",
                issuer_id,
                "--orders",
                str(args.orders),
                "--seed",
                str(args.seed),
                "--drop",
                str(args.drop),
                "--duplicate",
                str(args.duplicate),
                "--reorder",
                str(args.reorder),
                "--concurrency",
                "4",
                "--state",
                str(work / "state.sqlite3"),
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        print(feed.stdout.rstrip())
        if feed.returncode not in (0, 1):  # 1: some POSTs were refused; the summary says which
            raise SystemExit(feed.stderr)
        generated = int(re.search(r"notifications generated:\s+(\d+)", feed.stdout).group(1))
        dropped = int(re.search(r"dropped:\s+(\d+)", feed.stdout).group(1))

        os.environ.update(env)
        import django

        django.setup()
        from django.db import connection

        from d1sandbox.state import StateStore
        from d1sandbox.verify import verify_run
        from tracking.models import CardOrder
        from tracking.services.reconcile import order_reconcile

        store = StateStore(work / "state.sqlite3")
        truth = list(store.orders(issuer_ids=[issuer_id]))
        store.close()
        orders_with_drop = sum(1 for o in truth if any(i.dropped for i in o.items))
        orders_last_dropped = sum(1 for o in truth if o.delivered and o.items[-1].dropped)
        invisible = sum(1 for o in truth if not o.delivered)

        token = _token()
        before = verify_run(
            portal_url=portal_url,
            token=token,
            issuer_ids=[issuer_id],
            state_path=work / "state.sqlite3",
            out=lambda _: None,
        )
        wrong_before = len({line.split(":", 1)[0] for line in before.mismatches})

        order_ids = list(
            CardOrder.objects.filter(issuer__issuer_id=issuer_id).values_list("id", flat=True)
        )

        def reconcile(order_id: int) -> str:
            try:
                return order_reconcile(order_id=order_id, trigger="command").outcome
            finally:
                connection.close()

        started = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            outcomes = list(pool.map(reconcile, order_ids))
        elapsed = time.monotonic() - started
        changed = outcomes.count("changed")

        after = verify_run(
            portal_url=portal_url,
            token=token,
            issuer_ids=[issuer_id],
            state_path=work / "state.sqlite3",
            out=lambda _: None,
        )
        # An order whose every item the webhook refused cannot be reconciled: it does not exist.
        missing = sum(1 for line in after.mismatches if line.endswith("missing in the portal"))
        rate = len(order_ids) / elapsed
        counts = ", ".join(f"{o} {outcomes.count(o)}" for o in sorted(set(outcomes)))
        rows = [
            ("", "portal (reconciliation)", "sandbox (its own count)"),
            ("orders", f"{len(order_ids)} seen", f"{args.orders} fed, {invisible} never seen"),
            (
                "drift",
                f"{changed} corrected ({changed / len(order_ids):.1%})",
                f"{orders_last_dropped} with their last notification dropped",
            ),
            (
                "dropped notifications",
                "",
                f"{dropped} of {generated} ({dropped / generated:.1%}) "
                f"in {orders_with_drop} orders",
            ),
            ("wrong before reconciling", f"{wrong_before} orders (verify)", ""),
            ("wrong after reconciling", f"{len(after.mismatches)} mismatches (verify)", ""),
            ("  of which never stored", f"{missing} orders (items refused as invalid)", ""),
        ]
        print()
        print(
            f"{connection.vendor}: reconciled {len(order_ids)} orders in {elapsed:.1f} s "
            f"with {args.workers} threads = {rate:.0f} orders/s ({counts})"
        )
        for label, portal, truth in rows:
            print(f"{label:<26}{portal:<34}{truth}")
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(timeout=15)
        if sandbox is not None:
            sandbox.stop()


def _token() -> str:
    from django.contrib.auth import get_user_model

    from tracking.services.api_tokens import api_token_create
    from tracking.services.audit import Actor
    from tracking.services.roles import OPERATORS, roles_ensure

    # verify reads tracking numbers, which only operators see unmasked.
    user, _ = get_user_model().objects.get_or_create(
        username="bench-verifier", defaults={"is_staff": True}
    )
    user.groups.add(roles_ensure()[OPERATORS])
    return api_token_create(user=user, name="bench", actor=Actor.of_command("bench")).key


if __name__ == "__main__":
    main()
