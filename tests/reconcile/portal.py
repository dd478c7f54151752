"""The portal as end-to-end tests run it: gunicorn, a Celery worker and beat, on this test's
database, pointed at a running sandbox."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from tests.reconcile.sandbox import ROOT, Sandbox
from tests.reconcile.test_end_to_end import (
    SHORT_CLOCKS,
    Processes,
    _free_port,
    _test_database_url,
    _wait_for_http,
)


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
    port = _free_port()
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
    _wait_for_http(f"{url}/api/schema/", timeout=30, process=web)
    return url
