"""Beat's housekeeping: expired D1 tokens are deleted, live ones kept."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from tracking.tasks import clear_expired_tokens_task

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
