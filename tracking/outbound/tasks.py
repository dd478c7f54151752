"""Celery tasks of the outbound events: one delivery, and the sweep that re-queues what is due."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(
    name="tracking.deliver_event",
    time_limit=settings.EVENT_DELIVERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.EVENT_DELIVERY_TASK_TIME_LIMIT - 5,
)
def deliver_event_task(delivery_id: int) -> str | None:
    from tracking.outbound.delivery import delivery_attempt

    return delivery_attempt(delivery_id)


@shared_task(name="tracking.events_sweep")
def events_sweep_task() -> int:
    """Silent orders' events, then every due delivery queued again."""
    from tracking.outbound.delivery import deliveries_sweep
    from tracking.outbound.outbox import silent_sweep

    silent_sweep()
    return deliveries_sweep()
