"""Signal receivers that feed the metrics and the log context; connected by the app's ready()."""

from __future__ import annotations

import structlog
from django.conf import settings

from tracking.d1.access import client_address
from tracking.infrastructure import metrics
from tracking.infrastructure.request_ids import request_id_from_header, request_id_new
from tracking.infrastructure.signals import delivery_answered
from tracking.observability.logs import request_line
from tracking.observability.state import sweep_success_record


def on_delivery_answered(
    sender,
    *,
    status: int,
    error_code: str = "",
    new_count: int = 0,
    duplicate_count: int = 0,
    rejected_count: int = 0,
    **kwargs,
) -> None:
    metrics.notification_observe(
        status=status,
        error_code=error_code,
        new_count=new_count,
        duplicate_count=duplicate_count,
        rejected_count=rejected_count,
    )


def on_request_started(sender, *, request, logger, log_kwargs, **kwargs) -> None:
    """Make D1's x-correlation-id the request id when it is clean; log the request's line and
    the client's address as the rate limits see it (`LOG_CLIENT_IP`).

    django-structlog made a uuid and would log the full path with its query string; the line
    logged instead is `request_line`'s (query keys without their values).
    """
    request_id = request_id_from_header(request.headers.get("x-correlation-id"))
    request.request_id = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    if settings.LOG_CLIENT_IP:
        structlog.contextvars.bind_contextvars(ip=client_address(request))
    log_kwargs["request"] = request_line(request)


def on_request_failed(sender, *, request, log_kwargs, **kwargs) -> None:
    """A failed request is logged as `request_line` shows it, like its start and finish."""
    log_kwargs["request"] = request_line(request)


def on_request_finished(sender, *, request, response, log_kwargs, **kwargs) -> None:
    log_kwargs["request"] = request_line(request)
    request_id = getattr(request, "request_id", None)
    if request_id:
        response["X-Request-ID"] = request_id


def on_task_started(sender, *, task, logger, **kwargs) -> None:
    """A task enqueued outside any request (beat, a shell) still gets a request id to follow."""
    if "request_id" not in structlog.contextvars.get_contextvars():
        structlog.contextvars.bind_contextvars(request_id=request_id_new())


def on_reconcile_attempt_saved(sender, *, instance, created: bool, **kwargs) -> None:
    """Count an on-demand call when its row is written: the call to D1 has happened by then."""
    if not created:
        return
    latency_ms = getattr(instance, "latency_ms", None)
    metrics.reconcile_attempt_observe(
        outcome=str(getattr(instance, "outcome", "") or "unknown"),
        seconds=latency_ms / 1000 if isinstance(latency_ms, (int, float)) else None,
    )


SWEEP_TASK_NAME = "tracking.reconcile_sweep"


def on_task_success(sender=None, **kwargs) -> None:
    """Remember when a reconcile sweep last finished (for the gauge and the late-sweep alert)."""
    if getattr(sender, "name", None) == SWEEP_TASK_NAME:
        sweep_success_record()


def receivers_connect() -> None:
    from celery.signals import task_success
    from django.apps import apps
    from django.db.models.signals import post_save
    from django_structlog import signals as structlog_signals
    from django_structlog.celery import signals as structlog_celery_signals

    delivery_answered.connect(on_delivery_answered, dispatch_uid="observability-delivery")
    structlog_signals.bind_extra_request_metadata.connect(
        on_request_started, dispatch_uid="observability-request-id"
    )
    structlog_signals.bind_extra_request_finished_metadata.connect(
        on_request_finished, dispatch_uid="observability-request-id-header"
    )
    structlog_signals.bind_extra_request_failed_metadata.connect(
        on_request_failed, dispatch_uid="observability-request-failed"
    )
    structlog_celery_signals.bind_extra_task_metadata.connect(
        on_task_started, dispatch_uid="observability-task-request-id"
    )
    task_success.connect(on_task_success, dispatch_uid="observability-sweep-success")
    # Reconciliation records each on-demand call as a ReconcileAttempt row (when that model is
    # installed); counting its creation keeps the reconcile code free of metrics calls.
    try:
        attempt_model = apps.get_model("tracking", "ReconcileAttempt")
    except LookupError:
        attempt_model = None
    if attempt_model is not None:
        post_save.connect(
            on_reconcile_attempt_saved, sender=attempt_model, dispatch_uid="observability-attempt"
        )
