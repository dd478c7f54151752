"""Read-API tokens: kept only as digests, shown once, expiring, revoked by deleting them."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from tracking.models import AuditEntry, ReadApiToken
from tracking.services.api_tokens import api_token_create
from tracking.services.audit import Actor

pytestmark = pytest.mark.django_db


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_is_stored_only_as_its_digest(staff_user):
    issued = api_token_create(user=staff_user, name="erp", actor=Actor(user=staff_user))

    row = ReadApiToken.objects.get()
    assert row.digest == hashlib.sha256(issued.key.encode()).hexdigest()
    stored = " ".join(str(v) for v in ReadApiToken.objects.values_list().get())
    assert issued.key not in stored
    assert api(issued.key).get("/api/v1/orders/").status_code == 200


def test_a_token_expires(staff_user):
    issued = api_token_create(
        user=staff_user, name="erp", lifetime=timedelta(days=1), actor=Actor(user=staff_user)
    )

    with time_machine.travel(timezone.now() + timedelta(days=1, seconds=1)):
        response = api(issued.key).get("/api/v1/orders/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Token expired."


def test_unknown_and_revoked_tokens_and_inactive_users_are_refused(staff_user):
    issued = api_token_create(user=staff_user, name="erp", actor=Actor(user=staff_user))
    assert api("not-a-token").get("/api/v1/orders/").status_code == 401
    staff_user.is_active = False
    staff_user.save()
    assert api(issued.key).get("/api/v1/orders/").status_code == 401
    staff_user.is_active = True
    staff_user.save()
    ReadApiToken.objects.all().delete()
    assert api(issued.key).get("/api/v1/orders/").status_code == 401


def test_the_admin_shows_a_new_token_once(client, administrator_user, staff_user):
    client.force_login(administrator_user)

    response = client.post(
        "/admin/tracking/readapitoken/add/", {"user": staff_user.pk, "name": "erp", "days": "30"}
    )

    assert response.status_code == 200
    key = response.context["issued"].key
    assert key in response.content.decode()
    assert api(key).get("/api/v1/orders/").status_code == 200
    token = ReadApiToken.objects.get()
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    listing = client.get("/admin/tracking/readapitoken/").content.decode()
    detail = client.get(f"/admin/tracking/readapitoken/{token.pk}/change/").content.decode()
    assert key not in listing and key not in detail
    assert AuditEntry.objects.filter(action="api_token.create").exists()


def test_only_a_superuser_makes_a_token_that_acts_as_a_superuser(client, administrator_user):
    root = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    client.force_login(administrator_user)

    response = client.post(
        "/admin/tracking/readapitoken/add/", {"user": root.pk, "name": "x", "days": "30"}
    )

    assert response.status_code == 403
    assert not ReadApiToken.objects.exists()
    assert AuditEntry.objects.filter(action="access.refused").exists()


def test_the_command_prints_the_token_once(staff_user, capsys):
    call_command("create_api_token", "staff", "--days", "7")

    key = capsys.readouterr().out.strip().removeprefix("token=")
    assert api(key).get("/api/v1/orders/").status_code == 200
    assert ReadApiToken.objects.get().expires_at < timezone.now() + timedelta(days=7, minutes=1)


def test_viewers_do_not_see_tokens(client, viewer_user):
    client.force_login(viewer_user)
    assert client.get("/admin/tracking/readapitoken/").status_code == 403


def test_clear_tokens_from_before_are_kept_as_digests_and_erased(staff_user):
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module(
        "tracking.migrations.0006_security_hashed_tokens_key_locations"
    )
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "user_id integer NOT NULL, created timestamp with time zone NOT NULL)"
            if connection.vendor == "postgresql"
            else "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "user_id integer NOT NULL, created datetime NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, user_id, created) VALUES (%s, %s, %s)",
            [old_key, staff_user.pk, timezone.now()],
        )
    try:
        # The step uses only the editor's connection (SQLite's editor cannot open in a test).
        migration.tokens_hash(apps, SimpleNamespace(connection=connection))
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM authtoken_token")
            assert cursor.fetchone()[0] == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE authtoken_token")

    assert api(old_key).get("/api/v1/orders/").status_code == 200
    assert ReadApiToken.objects.get().expires_at > timezone.now() + timedelta(days=80)


def test_a_token_never_starts_with_a_dash_so_a_command_line_takes_it(staff_user, monkeypatch):
    # One random key in 64 starts with "-": `verify --token -Xy…` would read it as an option.
    keys = iter(["-starts-with-a-dash-" + "a" * 23, "b" * 43])
    monkeypatch.setattr("tracking.services.api_tokens.secrets.token_urlsafe", lambda n: next(keys))
    created = api_token_create(user=staff_user, name="cli", actor=Actor.of_command("tests"))
    assert created.key == "b" * 43
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {created.key}")
    assert api.get("/api/v1/orders/").status_code == 200
