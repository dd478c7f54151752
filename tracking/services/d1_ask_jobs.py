"""One capped, paced job when staff ask D1 about many orders at once, and its Celery task.

`d1_ask_job_start` turns "Ask D1 now" on a selection (however large, `select_across` included)
into ONE D1AskJob of at most D1_BULK_ASK_MAX orders, ONE audit entry holding the counts, and ONE
task; `d1_ask_job_run` (that task) walks the orders at D1_BULK_ASK_PER_SECOND through
`order_reconcile`, writing its progress on the job row as it goes.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from tracking.models import (
    CardOrder,
    D1AskJob,
    D1AskJobStatus,
    ReconcileOutcome,
    ReconcileTrigger,
)
from tracking.services.audit import Actor, audit_actor
from tracking.services.d1_asks import d1_ask_allow
from tracking.services.reconcile import SKIPPED, order_reconcile

logger = logging.getLogger(__name__)

AUDIT_ORDERS_MAX = 100


def d1_ask_job_start(*, orders: QuerySet[CardOrder], actor: Actor) -> D1AskJob:
    """One job for "Ask D1 now" on `orders`: the first D1_BULK_ASK_MAX of them, in pk order.

    Counts one ask for the actor (`d1_ask_allow`, may raise D1AskRefused), writes the D1AskJob
    and one `orders.reconcile_bulk` audit entry (selected, asked, cap), and queues one
    `tracking.d1_ask_job` task after commit. Nothing is asked of D1 here.
    """
    cap = settings.D1_BULK_ASK_MAX
    d1_ask_allow(actor=actor, issuer_ids=[])
    selected = orders.count()
    order_ids = list(orders.order_by("pk").values_list("pk", flat=True)[:cap])
    user = actor.user if actor.user_id is not None else None
    with transaction.atomic():
        job = D1AskJob.objects.create(
            created_by=user,
            username=user.get_username() if user is not None else actor.command[:150],
            selected=selected,
            total=len(order_ids),
            order_ids=order_ids,
        )
        audit_actor(
            actor,
            action="orders.reconcile_bulk",
            targets=[job],
            details={
                "selected": selected,
                "asked": len(order_ids),
                "cap": cap,
                "first_order": order_ids[0] if order_ids else None,
                "last_order": order_ids[-1] if order_ids else None,
                # Small selections name their orders; a large one its range and count.
                **({"orders": order_ids} if len(order_ids) <= AUDIT_ORDERS_MAX else {}),
            },
        )
        d1_ask_job_task.delay_on_commit(job.pk)
    return job


def d1_ask_job_run(*, job_id: int) -> D1AskJob | None:
    """Ask D1 about each order of the job in turn, at most D1_BULK_ASK_PER_SECOND.

    Each order goes through `order_reconcile` (trigger staff, the job's user), so it gets its
    ReconcileAttempt as a single ask would. Progress (done, failed) is written after each order,
    so the job's page shows it and a task run again after a crash resumes where it stopped.
    Returns the finished job, or None when there is no such job.
    """
    job = D1AskJob.objects.filter(pk=job_id).first()
    if job is None or job.status == D1AskJobStatus.DONE:
        return job
    D1AskJob.objects.filter(pk=job.pk).update(
        status=D1AskJobStatus.RUNNING, started_at=job.started_at or timezone.now()
    )
    interval = 1.0 / settings.D1_BULK_ASK_PER_SECOND
    next_at = time.monotonic()
    for order_id in job.order_ids[job.walked :]:
        wait = next_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        next_at = max(next_at + interval, time.monotonic())
        try:
            result = order_reconcile(
                order_id=order_id, trigger=ReconcileTrigger.STAFF, user_id=job.created_by_id
            )
            failed = result.outcome in (ReconcileOutcome.ERROR, SKIPPED)
        except Exception:  # one order's database trouble must not stop the others
            logger.exception("d1 ask job=%s order=%s failed", job.pk, order_id)
            failed = True
        D1AskJob.objects.filter(pk=job.pk).update(
            **({"failed": F("failed") + 1} if failed else {"done": F("done") + 1})
        )
    D1AskJob.objects.filter(pk=job.pk).update(
        status=D1AskJobStatus.DONE, finished_at=timezone.now()
    )
    job.refresh_from_db()
    logger.info("d1 ask job=%s done=%s failed=%s total=%s", job.pk, job.done, job.failed, job.total)
    return job


@shared_task(name="tracking.d1_ask_job")
def d1_ask_job_task(job_id: int) -> str:
    """Walk one "Ask D1 now" job's orders at D1's pace; a second run resumes, never repeats."""
    job = d1_ask_job_run(job_id=job_id)
    return f"{job.done}/{job.total}" if job is not None else "no such job"
