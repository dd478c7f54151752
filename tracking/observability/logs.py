"""Structured logs: structlog for every logger, one request id per request, carried into tasks.

- `logging_settings()` builds Django's LOGGING: JSON lines in production (`LOG_FORMAT=json`),
  readable key=value lines in development (`LOG_FORMAT=console`). Plain `logging` loggers go
  through the same processors, so their lines carry the request id too.
- The request id is D1's `x-correlation-id` when it is well formed (`^[A-Za-z0-9_-]{1,64}$`),
  otherwise a fresh one; it is bound for the request, answered in `X-Request-ID`, passed to the
  Celery tasks the request enqueues (django-structlog puts it in the task headers), and offered to
  the D1 client through `request_id_current()`.
- Logs carry ids, codes and counts; nobody logs a payload.

This module is imported by the settings, so it must not import Django models or settings.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_from_header(value: str | None) -> str:
    """D1's correlation id when it is well formed (never trusted otherwise), else a new id."""
    if value and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return request_id_new()


def request_id_current() -> str | None:
    """The request id bound to the current request or task, if any, for outgoing calls."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    if isinstance(value, str) and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return None


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
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        # Plain tracebacks: rich ones take seconds to render and fill the terminal.
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
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
                "foreign_pre_chain": _SHARED_PROCESSORS,
            },
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # django-structlog already logs every request with its status and id.
            "django.server": {"level": "WARNING"},
            "gunicorn.access": {"level": "WARNING"},
        },
    }
