"""The Celery application; its configuration is read from Django settings under `CELERY_`."""

import os

from celery import Celery
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# observability: bind the request id (and task id) of the enqueuing request in worker logs.
app.steps["worker"].add(DjangoStructLogInitStep)
app.autodiscover_tasks()
app.autodiscover_tasks(["tracking.intake"], related_name="projector")  # its task, beside it
