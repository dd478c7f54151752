"""Real processes for the scale-out run and the fault drills: gunicorn, Celery, the D1 sandbox,
and throwaway PostgreSQL and Redis servers on their own ports (never the machine's main ones).

Every process writes its output to a file in the test's folder; `Cluster.stop_all()` ends them
(the test's fixture does, whatever happens) and a failing test prints the last lines of each.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable
METRICS_TOKEN = "drill-scraper-token"

# Clocks short enough for a drill to take seconds (see tests/reconcile for their meaning).
SHORT_CLOCKS = {
    "RECONCILE_STAGE_THRESHOLDS": '{"CARD_PROD_REQUESTED": 2, "DATA_PREPARED": 2, '
    '"CARD_PROD_READY": 2, "CARD_PROD_ONGOING": 2, "CARD_PROD_DONE": 2}',
    "RECONCILE_DEFAULT_STAGE_THRESHOLD": "2",
    "RECONCILE_SHIPPED_INTERVAL": "3",
    "RECONCILE_BACKOFF_BASE": "1",
    "RECONCILE_BACKOFF_CAP": "4",
    "RECONCILE_SWEEP_INTERVAL": "1",
    "RECONCILE_CLAIM_SECONDS": "20",
    "RECONCILE_TASK_RATE_LIMIT": "100/s",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_database_url() -> str:
    """The URL of this test session's database, for processes that must share its rows."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def portal_env(*, database_url: str, broker_url: str, cache_url: str, folder: Path, **extra):
    """The environment of a portal process (web, worker or beat) for one drill."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "drill-only-not-a-secret",
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": broker_url,
        # A queue of its own: nothing another run left in the broker reaches these workers.
        "CELERY_TASK_DEFAULT_QUEUE": f"drill-{uuid.uuid4().hex[:12]}",
        "CACHE_URL": cache_url,
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "prometheus"),
        "METRICS_TOKEN": METRICS_TOKEN,
        # Fresh gauges on every scrape: the shared cache may hold another drill's snapshot.
        "METRICS_DB_CACHE_SECONDS": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "GUNICORN_TIMEOUT": "20",
        # The projector folds right after each delivery commits, in the web process: drills
        # that run no worker read folded orders. A drill may set "celery" instead.
        "INGEST_FOLD": "inline",
        **SHORT_CLOCKS,
        **{key: str(value) for key, value in extra.items()},
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    return env


class Cluster:
    """The processes of one test; started with a name, their output in `<folder>/<name>.log`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def web(self, name: str, env: dict[str, str], *, workers: int = 2, threads: int = 4) -> str:
        """Start one gunicorn instance with the project's config; returns its base URL."""
        port = free_port()
        process = self.start(
            name,
            [
                PYTHON,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "config" / "gunicorn.py"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ],
            env,
        )
        url = f"http://127.0.0.1:{port}"
        ready = wait_until(lambda: _answers(f"{url}/healthz", process), timeout=40)
        assert ready, f"{name} did not start:\n{self.log_tail(name)}"
        return url

    def worker(self, name: str, env: dict[str, str], *, concurrency: int = 1) -> subprocess.Popen:
        return self.start(
            name,
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-l",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
        )

    def beat(self, name: str, env: dict[str, str]) -> subprocess.Popen:
        schedule = self.folder / f"{name}-schedule"
        return self.start(
            name,
            [PYTHON, "-m", "celery", "-A", "config", "beat", "-l", "INFO", "-s", str(schedule)],
            env,
        )

    def manage(self, env: dict[str, str], *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def log_text(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.log_text(name).splitlines()[-lines:])

    def children(self, name: str) -> list[int]:
        """Pids of the direct children of a process (gunicorn's or Celery's workers)."""
        parent = self.processes[name].pid
        found = []
        for status in glob.glob("/proc/[0-9]*/status"):
            try:
                text = Path(status).read_text()
            except OSError:
                continue
            match = re.search(r"^PPid:\s+(\d+)$", text, re.MULTILINE)
            if match and int(match.group(1)) == parent:
                found.append(int(Path(status).parent.name))
        return sorted(found)

    @staticmethod
    def kill(pid: int) -> None:
        """SIGKILL one process: no cleanup, no goodbye, as the kernel's OOM killer would."""
        os.kill(pid, signal.SIGKILL)

    def stop(self, name: str, *, timeout: float = 15) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            return
        # Processes started here lead a session of their own: end their children with them.
        own_group = os.getpgid(process.pid) == process.pid

        def send(signum: int) -> None:
            if own_group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)

        send(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(timeout=5)

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            with contextlib.suppress(ProcessLookupError):
                self.stop(name)


def _answers(url: str, process: subprocess.Popen) -> bool:
    assert process.poll() is None, f"{url}: the server exited early"
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# ---------------------------------------------------------------------------- the D1 sandbox


def sandbox_feed(
    cluster: Cluster,
    *,
    name: str,
    portal_url: str,
    issuer_id: str,
    state_path: Path,
    seed: int,
    orders: int,
    env: dict[str, str],
    extra: tuple[str, ...] = (),
    background: bool = False,
) -> subprocess.Popen | subprocess.CompletedProcess:
    """Run `python -m d1sandbox feed` against one web instance (D1-style retries included)."""
    args = [
        PYTHON,
        "-m",
        "d1sandbox",
        "feed",
        "--portal",
        portal_url,
        "--issuer",
        issuer_id,
        "--orders",
        str(orders),
        "--seed",
        str(seed),
        "--state",
        str(state_path),
        "--log-level",
        "WARNING",
        # Each drill counts the orders it asked for; a re-order of a card would add one.
        "--reissue-rate",
        "0",
        *extra,
    ]
    if background:
        return cluster.start(name, args, env)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def feed_figure(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}:\s+(\d+)", output)
    assert match, output
    return int(match.group(1))


# ---------------------------------------------------------------------------- throwaway servers


def _postgres_bin(program: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    if found:
        return found[-1]
    path = shutil.which(program)
    if path is None:
        raise FileNotFoundError(program)
    return path


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (initdb + pg_ctl) on a free port, in a temporary folder.

    Never the machine's server on 5432: stopping this one harms nobody. Runs as the `postgres`
    system user when the test runs as root (PostgreSQL refuses root).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="portal-drill-pg-", dir="/tmp"))
        self.data = self.folder / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            _postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync",
        )  # fmt: skip
        self.start()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_user, *args], check=True, capture_output=True, timeout=60, cwd=self.folder
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100"
        )
        log = str(self.folder / "server.log")
        self._run(
            _postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class ThrowawayRedis:
    """A redis-server of its own on a free port, without persistence; never the one on 6379."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        process = self.cluster.start(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            os.environ.copy(),
        )
        import redis

        def up() -> bool:
            assert process.poll() is None, self.cluster.log_tail("redis")
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
            except redis.RedisError:
                return False

        assert wait_until(up, timeout=10)

    def stop(self) -> None:
        self.cluster.stop("redis")
