"""The Celery application; its configuration is read from Django settings under `CELERY_`."""

import os

from celery import Celery
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Tasks are declared beside the services they run; a worker or beat imports these modules at
# start, so that it knows every task by name (the names are those of CELERY_BEAT_SCHEDULE).
TASK_MODULES = (
    "tracking.services.reconcile",
    "tracking.services.d1_ask_jobs",
    "tracking.services.retention",
    "tracking.insight.refresh",
    "tracking.d1.clients",
    "tracking.outbound.delivery",
    "tracking.outbound.outbox",
    "tracking.intake.projector",
)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# observability: bind the request id (and task id) of the enqueuing request in worker logs.
app.steps["worker"].add(DjangoStructLogInitStep)
# The installed apps' `tasks` modules, then ours (each module itself, not a `tasks` beside it).
app.autodiscover_tasks()
app.autodiscover_tasks(lambda: TASK_MODULES, related_name=None)
