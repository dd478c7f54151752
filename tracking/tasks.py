"""Celery tasks: thin callers of the reconciliation services, idempotent and safe to run twice."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.conf import settings

from tracking.models import ReconcileTrigger
from tracking.services.reconcile import events_apply_pending, order_reconcile, reconcile_sweep


@shared_task(name="tracking.reconcile_order", rate_limit=settings.RECONCILE_TASK_RATE_LIMIT)
def reconcile_order_task(
    order_id: int,
    enqueued_at: str | None = None,
    trigger: str = ReconcileTrigger.SWEEP,
    user_id: int | None = None,
) -> str:
    """Reconcile one order; a copy of the task that runs after another did nothing."""
    result = order_reconcile(
        order_id=order_id,
        trigger=trigger,
        user_id=user_id,
        unless_reconciled_since=datetime.fromisoformat(enqueued_at) if enqueued_at else None,
    )
    return result.outcome


@shared_task(name="tracking.d1_ask_job")
def d1_ask_job_task(job_id: int) -> str:
    """Walk one "Ask D1 now" job's orders at D1's pace; a second run resumes, never repeats."""
    from tracking.services.d1_asks import d1_ask_job_run

    job = d1_ask_job_run(job_id=job_id)
    return f"{job.done}/{job.total}" if job is not None else "no such job"


@shared_task(name="tracking.reconcile_sweep")
def reconcile_sweep_task() -> int:
    """Claim the orders that are due and queue one reconcile task for each."""
    return len(reconcile_sweep().order_ids)


@shared_task(name="tracking.apply_pending_events")
def apply_pending_events_task() -> int:
    """The safety net: re-apply stored events that were never applied."""
    return events_apply_pending()


@shared_task(name="tracking.clear_expired_tokens")
def clear_expired_tokens_task() -> None:
    """Delete D1's expired and revoked OAuth tokens (django-oauth-toolkit's `cleartokens`)."""
    from oauth2_provider.models import clear_expired

    clear_expired()


@shared_task(name="tracking.insight_refresh")
def insight_refresh_task() -> int:
    """Refresh the stage statistics, predictions and production files (incremental)."""
    from tracking.insight.refresh import insight_refresh

    return insight_refresh().orders


@shared_task(name="tracking.retention_prune")
def retention_prune_task() -> list[str]:
    """Apply the retention policy (RETENTION_* settings); log and return what it removed."""
    from tracking.services.retention import retention_prune

    return retention_prune().lines()


# Outbound events (tracking/outbound/tasks.py), registered with the other tasks here.
from tracking.outbound.tasks import deliver_event_task, events_sweep_task  # noqa: E402, F401
