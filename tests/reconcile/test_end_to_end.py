"""End to end: the sandbox feeds gunicorn with drops, duplicates and reordering; Celery beat and a
worker reconcile; afterwards `python -m d1sandbox verify` finds no mismatch.

Everything runs as separate processes over real HTTP, on PostgreSQL and Redis: the test database
of this session is handed to gunicorn and Celery through DATABASE_URL, so the test must be
transactional (its rows are committed where the other processes can see them).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count

from d1sandbox.keys import key_pair_ensure
from d1sandbox.testing import SandboxProcess
from tests.fixtures.api_tokens import read_api_token
from tests.reconcile.sandbox import ROOT, Sandbox, sandbox_converge, sandbox_feed, sandbox_verify
from tracking.models import CardOrder, Issuer, ReconcileAttempt
from tracking.services.roles import OPERATORS, roles_ensure

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "E2EBANK001"
ORDERS = 200
# Short clocks so a run takes seconds: every stage counts as stuck after 3 s, shipped orders
# are asked again after 3 s of quiet, and the beat sweeps every second.
SHORT_CLOCKS = {
    "RECONCILE_STAGE_THRESHOLDS": json.dumps(
        dict.fromkeys(
            [
                "CARD_PROD_REQUESTED",
                "DATA_PREPARED",
                "CARD_PROD_READY",
                "CARD_PROD_ONGOING",
                "CARD_PROD_DONE",
            ],
            3,
        )
    ),
    "RECONCILE_DEFAULT_STAGE_THRESHOLD": "3",
    "RECONCILE_SHIPPED_INTERVAL": "3",
    "RECONCILE_BACKOFF_BASE": "1",
    "RECONCILE_BACKOFF_CAP": "4",
    "RECONCILE_SWEEP_INTERVAL": "1",
    "RECONCILE_PENDING_EVENTS_INTERVAL": "5",
    "RECONCILE_CLAIM_SECONDS": "30",
    "RECONCILE_TASK_RATE_LIMIT": "100/s",
}
# After the stream: at most this many seconds (about 60 sweeps) for the portal to converge.
CONVERGE_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _test_database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def redis_broker() -> str:
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("needs a Redis broker (set CELERY_BROKER_URL=redis://...)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis broker {url} is not reachable: {exc}")
    return url


class Processes:
    """Child processes with their output in files; all stopped at the end, logs shown on failure."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[tuple[str, subprocess.Popen]] = []
        self.sandboxes: list[SandboxProcess] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("w")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running.append((name, process))
        return process

    def sandbox(self, *, keys_dir: Path, state_path: Path) -> SandboxProcess:
        server = SandboxProcess(
            keys_dir=keys_dir, state_path=state_path, log_path=self.directory / "sandbox.log"
        )
        self.sandboxes.append(server)
        return server

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = (self.directory / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                process.terminate()
        for _, process in self.running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for server in self.sandboxes:
            server.stop()


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.stop_all()
    # Shown by pytest only when the test fails.
    names = [name for name, _ in running.running]
    if running.sandboxes:
        names.append("sandbox")
    for name in names:
        print(f"----- {name} (last lines)\n{running.log_tail(name)}")


def _wait_for_http(url: str, *, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: the server exited early"
        try:
            requests.get(url, timeout=5, allow_redirects=False)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_dropped_duplicated_and_reordered_notifications_end_in_the_truth(
    tmp_path, redis_broker, processes
):
    Issuer.objects.create(issuer_id=ISSUER_ID, name="End-to-end Bank")
    # verify reads tracking numbers, which only operators see unmasked.
    staff = get_user_model().objects.create_user("verifier", is_staff=True)
    staff.groups.add(roles_ensure()[OPERATORS])
    token = read_api_token(staff)

    sandbox_dir = tmp_path / "sandbox"
    keys = key_pair_ensure(directory=sandbox_dir / "keys")
    state_path = sandbox_dir / "state.sqlite3"
    sandbox = Sandbox(
        process=processes.sandbox(keys_dir=keys.directory, state_path=state_path),
        keys=keys,
        state_path=state_path,
    )

    web_port = _free_port()
    portal_url = f"http://127.0.0.1:{web_port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "end-to-end-test-only",
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": redis_broker,
        # A queue of its own: nothing left in the broker by another run reaches this worker.
        "CELERY_TASK_DEFAULT_QUEUE": f"e2e-{uuid.uuid4().hex[:12]}",
        "CACHE_URL": os.environ.get("CACHE_URL") or f"filecache://{tmp_path / 'cache'}",
        **sandbox.portal_settings(),
        "D1_MAX_RETRIES": "2",
        **SHORT_CLOCKS,
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    python = sys.executable

    web = processes.start(
        "web",
        [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{web_port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--no-control-socket",
        ],
        env,
    )
    processes.start(
        "worker",
        [python, "-m", "celery", "-A", "config", "worker", "--concurrency", "2", "-l", "INFO"],
        env,
    )
    # Two beats, as after a careless deployment: the sweep's claims make the second harmless.
    for n in (1, 2):
        processes.start(
            f"beat{n}",
            [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "INFO",
                "-s",
                str(tmp_path / f"beat{n}-schedule"),
            ],
            env,
        )
    _wait_for_http(f"{portal_url}/api/schema/", timeout=30, process=web)

    feed = sandbox_feed(
        portal_url=portal_url,
        issuer_id=ISSUER_ID,
        orders=ORDERS,
        state_path=state_path,
        env=env,
        args=["--seed", "13", "--drop", "0.2", "--duplicate", "0.1", "--reorder", "0.1"],
    )
    dropped = int(re.search(r"dropped:\s+(\d+)", feed).group(1))
    assert dropped > 0, feed

    # The stream is over; give the beat a bounded number of sweeps to recover what was dropped.
    _, converged = sandbox_converge(
        portal_url=portal_url, token=token, state_path=state_path, seconds=CONVERGE_SECONDS
    )

    code, output = sandbox_verify(
        portal_url=portal_url, token=token, state_path=state_path, env=env
    )
    assert code == 0 and "mismatches: 0" in output, output
    checked = int(re.search(r"orders checked: (\d+)", output).group(1))
    assert checked > ORDERS * 0.9

    outcomes = dict(
        ReconcileAttempt.objects.values_list("outcome").annotate(n=Count("id")).order_by()
    )
    print(
        f"dropped {dropped} notifications; converged {converged:.1f} s "
        f"after the stream; attempts {outcomes}"
    )
    # Reconciliation did the recovering, and left a record of it.
    assert ReconcileAttempt.objects.filter(outcome="changed", trigger="sweep").exists()
    # Every card order the portal holds was checked, except an older order of a card ordered
    # again whose last word was dropped: productionStatus answers with the newer one.
    hidden = int(re.search(r"hidden by a newer order of the card [^:]*: (\d+)", output).group(1))
    orders = CardOrder.objects.filter(
        issuer__issuer_id=ISSUER_ID, operation__in=["PRODUCE", "STANDALONE_TRACKING"]
    )
    assert orders.count() == checked + hidden
