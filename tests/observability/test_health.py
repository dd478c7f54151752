"""Liveness and readiness probes, as a load balancer sees them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from tests.fixtures import spec_examples as spec
from tracking.models import OperationEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def probe() -> Client:
    return Client()


def test_liveness_answers_without_touching_the_database(probe, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = probe.get("/healthz")

    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]


def test_readiness_is_ok_with_database_migrations_broker_and_fresh_items(probe, settings):
    response = probe.get("/readyz")

    assert response.status_code == 200, response.content
    assert response.content.decode().splitlines() == [
        "ok",
        "database: ok",
        "migrations: ok",
        "broker: ok",
        "unapplied_items: ok",
    ]


def test_readiness_json_tells_names_and_states_only(probe):
    response = probe.get("/readyz", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "migrations": "ok",
            "broker": "ok",
            "unapplied_items": "ok",
        },
    }


def test_an_item_left_unapplied_too_long_makes_the_instance_not_ready(
    probe, issuer, post_notification, settings
):
    settings.READINESS_MAX_UNAPPLIED_AGE = 60
    assert post_notification(spec.E1).status_code == 204
    # What a crash between storing and applying would leave behind.
    OperationEvent.objects.update(
        applied_at=None, first_received_at=timezone.now() - dt.timedelta(minutes=5)
    )

    response = probe.get("/readyz", HTTP_ACCEPT="application/json")

    assert response.status_code == 503
    assert response.json()["checks"]["unapplied_items"] == "fail"
    assert response.json()["checks"]["database"] == "ok"


def test_an_unreachable_broker_makes_the_instance_not_ready_and_says_nothing_more(probe, settings):
    from config.celery_app import app

    previous = app.conf.broker_write_url, app.conf.broker_transport
    # A port nothing listens on (the discard port of loopback).
    app.conf.broker_write_url, app.conf.broker_transport = "redis://127.0.0.1:9/0", "redis"
    try:
        response = probe.get("/readyz")
    finally:
        app.conf.broker_write_url, app.conf.broker_transport = previous

    assert response.status_code == 503
    text = response.content.decode()
    assert "broker: fail" in text
    assert "127.0.0.1" not in text and "redis" not in text.lower()


def test_probes_need_no_login_and_refuse_writes(probe):
    assert probe.post("/healthz").status_code == 405
    assert probe.post("/readyz").status_code == 405
