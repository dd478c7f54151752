"""The portal as end-to-end tests run it: gunicorn, a Celery worker and beat, on this test's
database, pointed at a running sandbox."""

from __future__ import annotations

import json
import os
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
from django.db import connection

from d1sandbox.testing import SandboxProcess
from tests.services.reconcile.sandbox import ROOT, Sandbox
from tracking.domain.statuses import NON_TERMINAL_STATUSES

SHORT_CLOCKS = {
    "RECONCILE_STAGE_THRESHOLDS": json.dumps(dict.fromkeys(NON_TERMINAL_STATUSES, 3)),
    "RECONCILE_DEFAULT_STAGE_THRESHOLD": "3",
    "RECONCILE_SHIPPED_INTERVAL": "3",
    "RECONCILE_BACKOFF_BASE": "1",
    "RECONCILE_BACKOFF_CAP": "4",
    "RECONCILE_SWEEP_INTERVAL": "1",
    "RECONCILE_CLAIM_SECONDS": "30",
    "RECONCILE_TASK_RATE_LIMIT": "100/s",
}


def free_port() -> int:
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


def wait_for_http(url: str, *, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: the server exited early"
        try:
            requests.get(url, timeout=5, allow_redirects=False)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def portal_environment(
    *, tmp_path: Path, sandbox: Sandbox, broker: str, **settings: str
) -> dict[str, str]:
    """The environment of every portal process: short clocks, then `settings` over them."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "end-to-end-test-only",
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": broker,
        # A queue of its own: nothing left in the broker by another run reaches this worker.
        "CELERY_TASK_DEFAULT_QUEUE": f"e2e-{uuid.uuid4().hex[:12]}",
        "CACHE_URL": os.environ.get("CACHE_URL") or f"filecache://{tmp_path / 'cache'}",
        **sandbox.portal_settings(),
        "D1_MAX_RETRIES": "2",
        **SHORT_CLOCKS,
        **settings,
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    return env


def portal_start(*, processes: Processes, env: dict[str, str], tmp_path: Path) -> str:
    """Start gunicorn, one worker and one beat; the portal's base URL once it answers."""
    python = sys.executable
    port = free_port()
    web = processes.start(
        "web",
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
        ],
        env,
    )
    processes.start(
        "worker",
        [python, "-m", "celery", "-A", "config", "worker", "--concurrency", "2", "-l", "INFO"],
        env,
    )
    processes.start(
        "beat",
        [python, "-m", "celery", "-A", "config", "beat", "-l", "INFO", "-s", str(tmp_path / "bs")],
        env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/api/schema/", timeout=30, process=web)
    return url
