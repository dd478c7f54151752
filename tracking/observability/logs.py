"""Structured logs: structlog for every logger, one request id per request, carried into tasks.

- `logging_settings()` builds Django's LOGGING: JSON lines in production (`LOG_FORMAT=json`),
  readable key=value lines in development (`LOG_FORMAT=console`). Plain `logging` loggers go
  through the same processors, so their lines carry the request id too.
- The request id (`tracking.infrastructure.request_ids`) is D1's `x-correlation-id` when it is
  clean, otherwise a fresh one; it is bound for the request, answered in `X-Request-ID`, passed
  to the Celery tasks the request enqueues (django-structlog puts it in the task headers), and
  offered to the D1 client through `request_id_current()`.
- Logs carry ids, codes and counts; nobody logs a payload. A request is logged as its method and
  path with its query keys but not their values (`request_line`), except paging and ordering;
  every line has its card numbers masked on the way out, whoever wrote it. A log line is text
  (`tracking.domain.masking`): the portal's own paths carry row numbers and issuer ids, never card
  ids, but a numeric card id that passes Luhn, in a path or a message, shows its last four
  digits only. The lines that name a card also name its order (`order=`) and the correlation
  id, which find it whole.

This module is imported by the settings, so it must not import Django models or settings.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, quote

import structlog

from tracking.infrastructure.after_response import after_response, queued_count, run_queued

# Query keys whose values are logged: paging and ordering, never a search, a filter or a token.
QUERY_KEYS_LOGGED_WITH_VALUE = frozenset({"p", "page", "page_size", "o", "ordering", "format"})
_SAFE_QUERY_VALUE = re.compile(r"^[A-Za-z0-9_.,-]{1,32}$")
_QUERY_KEYS_SHOWN = 20

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _bound_at_emit(logger: Any, method_name: str, event_dict: dict) -> dict:
    """The context bound when the line was logged (see `AfterResponseHandler`)."""
    record = event_dict.get("_record")
    context = getattr(record, "bound_context", None)
    if context is None:
        return structlog.contextvars.merge_contextvars(logger, method_name, event_dict)
    for key, value in context.items():
        event_dict.setdefault(key, value)
    return event_dict


def _stamped_at_emit(logger: Any, method_name: str, event_dict: dict) -> dict:
    """The time the line was logged (its record's), not the time it is written."""
    moment = dt.datetime.fromtimestamp(event_dict["_record"].created, tz=dt.UTC)
    event_dict["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return event_dict


# Lines from plain `logging` loggers are rendered where they are written: their context and time
# are the ones they were logged with.
_FOREIGN_PRE_CHAIN: list[Any] = [
    _bound_at_emit,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _stamped_at_emit,
]


class AfterResponseHandler(logging.Handler):
    """Writes a request's log lines after its answer is sent, so rendering them is off its path.

    Each line is kept with the context bound when it was logged and written to `target` once
    the response is sent (`tracking.infrastructure.after_response`); outside a request (workers,
    commands) at once. A line at ERROR or above is written at once with everything before it:
    a process that dies then loses none of them.
    """

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        record.bound_context = structlog.contextvars.get_contextvars()
        after_response(functools.partial(self.target.handle, record))
        if record.levelno >= logging.ERROR or queued_count() >= _KEPT_MAX:
            run_queued()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)


_KEPT_MAX = 200  # a request that logs more writes as it goes


def after_response_handler() -> AfterResponseHandler:
    """`AfterResponseHandler` around a StreamHandler (a factory for `LOGGING`'s "()" key)."""
    return AfterResponseHandler(logging.StreamHandler())


def request_line(request) -> str:
    """The request as logged: method, path with card numbers masked, query keys without values.

    `?q=4111...&access_token=...&p=2` is logged `?q&access_token&p=2`: what was asked, never
    what was searched for or which credential came along.
    """
    from tracking.domain.masking import (
        pan_mask_text,
    )  # not at import: the settings import this module

    line = f"{request.method} {pan_mask_text(request.path)}"
    query = request.META.get("QUERY_STRING", "")
    if not query:
        return line
    shown = []
    pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=None)
    for key, value in pairs[:_QUERY_KEYS_SHOWN]:
        name = quote(pan_mask_text(key)[:64], safe="_-.~[]")
        if key in QUERY_KEYS_LOGGED_WITH_VALUE and _SAFE_QUERY_VALUE.fullmatch(value):
            shown.append(f"{name}={value}")
        else:
            shown.append(name)
    if len(pairs) > _QUERY_KEYS_SHOWN:
        shown.append("…")
    return f"{line}?{'&'.join(shown)}"


def _card_numbers_masked(logger: Any, method_name: str, event_dict: dict) -> dict:
    """Mask card numbers in every text of a log line, whoever wrote it (a path, an error)."""
    from tracking.domain.masking import pan_mask_text

    for key, value in event_dict.items():
        if isinstance(value, str) and len(value) >= 13:
            event_dict[key] = pan_mask_text(value)
    return event_dict


def logging_settings(*, log_format: str, level: str) -> dict:
    """Django's LOGGING dict for `log_format` "json" or "console"; configures structlog too."""
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    if log_format == "json":
        renderer: list[Any] = [
            structlog.processors.format_exc_info,
            _card_numbers_masked,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        # Plain tracebacks: rich ones take seconds to render and fill the terminal.
        renderer = [
            _card_numbers_masked,
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *renderer,
                ],
                "foreign_pre_chain": _FOREIGN_PRE_CHAIN,
            },
        },
        "handlers": {
            "console": {
                "()": after_response_handler,
                "formatter": "structured",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # django-structlog already logs every request with its status and id.
            "django.server": {"level": "WARNING"},
            "gunicorn.access": {"level": "WARNING"},
        },
    }
