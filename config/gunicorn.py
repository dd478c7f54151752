"""gunicorn settings, every one from the environment: `gunicorn -c config/gunicorn.py config.wsgi`.

Workers are processes (CPU-bound work such as JSON and the fold runs in parallel), threads let a
worker overlap database waits. The webhook's answer is bounded by the database, so a request
that outlives GUNICORN_TIMEOUT is killed and D1 retries it (nothing is acknowledged before the
commit). The Prometheus folder is prepared here because prometheus-client must know it before
any worker imports it.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

_local = Path(__file__).resolve().parent.parent / ".local"


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


bind = os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('WEB_PORT') or 8000}"
workers = _int("GUNICORN_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 8))
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread"
# Killed and restarted when a request takes longer (D1 retries: nothing was acknowledged).
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then so a slow leak cannot grow without bound; jitter spreads them.
max_requests = _int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
backlog = _int("GUNICORN_BACKLOG", 2048)
# The proxy in front (TLS, mTLS) is the only peer allowed to set X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # django-structlog logs each request
# If switched on: the path without its query string (searches, tokens) and without the referrer.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss'
errorlog = "-"
loglevel = (os.environ.get("LOG_LEVEL") or "info").lower()
control_socket_disable = True
proc_name = os.environ.get("GUNICORN_PROC_NAME") or "portal-web"

# prometheus-client multiprocess mode: each worker writes its counters to files in this folder.
# Set but empty switches it off (counters per process, for a single worker).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_local / "prometheus"))
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"] or ".").resolve()
if not os.environ["PROMETHEUS_MULTIPROC_DIR"]:
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    _metrics_dir = None


def on_starting(server) -> None:
    """Drop the metric files of processes that no longer run (a previous start of this host)."""
    if _metrics_dir is None:
        return
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for path in _metrics_dir.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)


def child_exit(server, worker) -> None:
    """A dead worker's live gauges must not be summed any more (its counters still count)."""
    if _metrics_dir is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))
