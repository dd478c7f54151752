"""Work that does not decide a request's answer, run once the answer is sent.

`after_response(task)` queues `task` while a request is being served in this thread (between
Django's `request_started` and `request_finished`, which the server sends once it has written
the response) and runs it then; outside a request (workers, commands) it runs at once. A
queued task that fails is logged and does not stop the others. The request log's lines and the
refusal tallies use it: neither decides what D1 is answered.

It imports nothing of the portal, so that the logging configuration may use it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.core.signals import request_finished, request_started

logger = logging.getLogger(__name__)

_REQUEST = threading.local()


def after_response(task: Callable[[], object]) -> None:
    """Run `task` once this thread's request has been answered (at once outside a request)."""
    queued = getattr(_REQUEST, "queued", None)
    if queued is None:
        task()
    else:
        queued.append(task)


def queued_count() -> int:
    """How many tasks wait for this thread's answer to be sent."""
    return len(getattr(_REQUEST, "queued", None) or ())


def run_queued() -> None:
    """Run what this thread's request queued so far, now (a line that must not wait)."""
    queued = getattr(_REQUEST, "queued", None)
    if not queued:
        return
    _REQUEST.queued = []
    for task in queued:
        try:
            task()
        except Exception:
            logger.exception("a task run after the response failed")


def _request_begins(**kwargs) -> None:
    run_queued()  # a previous request whose end the server never signalled loses nothing
    _REQUEST.queued = []


def _request_ends(**kwargs) -> None:
    try:
        run_queued()
    finally:
        _REQUEST.queued = None


request_started.connect(_request_begins, weak=False, dispatch_uid="after-response-begins")
request_finished.connect(_request_ends, weak=False, dispatch_uid="after-response-ends")
