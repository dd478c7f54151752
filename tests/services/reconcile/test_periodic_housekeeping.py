"""Beat's housekeeping: expired D1 tokens are deleted, live ones kept."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from tracking.d1.clients import clear_expired_tokens_task

pytestmark = pytest.mark.django_db


def test_expired_tokens_are_deleted_and_live_ones_kept():
    app = Application.objects.create(
        name="d1",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    now = timezone.now()
    AccessToken.objects.create(application=app, token="old", expires=now - dt.timedelta(days=1))
    AccessToken.objects.create(application=app, token="live", expires=now + dt.timedelta(hours=1))

    clear_expired_tokens_task()

    assert list(AccessToken.objects.values_list("token", flat=True)) == ["live"]


def test_the_beat_schedule_runs_it():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "tracking.clear_expired_tokens" in tasks


def test_a_fresh_worker_knows_every_task_beat_sends():
    # Tasks live beside their services; a worker learns them from config.celery_app's list.
    import json
    import os
    import subprocess
    import sys

    script = (
        "import django; django.setup();"
        "from config.celery_app import app; app.loader.import_default_modules();"
        "import json; print(json.dumps(sorted(app.tasks)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    known = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
        ).stdout.splitlines()[-1]
    )
    beat = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert beat <= set(known)
    assert {"tracking.reconcile_order", "tracking.d1_ask_job", "tracking.deliver_event"} <= set(
        known
    )
