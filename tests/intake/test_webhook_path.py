"""The webhook's own path: no staff middleware on it, and bearer tokens remembered briefly."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.d1.test_d1_access import token_for
from tests.fixtures import spec_examples as spec
from tracking.d1.clients import d1_client_create
from tracking.models import Issuer

pytestmark = pytest.mark.django_db

WEBHOOK = f"/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards"


@pytest.fixture
def credentials(issuer, settings):
    settings.D1_WEBHOOK_REQUIRE_BEARER = True
    return d1_client_create(issuer=issuer)


def test_a_revoked_token_is_refused_within_the_remembered_seconds(
    credentials, post_notification, settings
):
    settings.D1_TOKEN_CHECK_CACHE_SECONDS = 1
    token = token_for(credentials)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert post_notification(spec.E1, **bearer).status_code == 204
    credentials.client.is_active = False
    credentials.client.save()

    # Still remembered as valid for at most D1_TOKEN_CHECK_CACHE_SECONDS, then refused.
    assert post_notification(spec.E2, **bearer).status_code == 204
    time.sleep(1.1)
    assert post_notification(spec.E3, **bearer).status_code == 401


def test_a_remembered_token_costs_no_lookup(credentials, post_notification, settings):
    settings.D1_TOKEN_CHECK_CACHE_SECONDS = 60
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token_for(credentials)}"}
    assert post_notification(spec.E1, **bearer).status_code == 204

    with CaptureQueriesContext(connection) as queries:
        assert post_notification(spec.E2, **bearer).status_code == 204

    assert not [q for q in queries if "oauth2_provider_accesstoken" in q["sql"]]


def test_without_memory_a_revoked_token_is_refused_at_once(
    credentials, post_notification, settings
):
    settings.D1_TOKEN_CHECK_CACHE_SECONDS = 0
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token_for(credentials)}"}
    assert post_notification(spec.E1, **bearer).status_code == 204
    credentials.client.is_active = False
    credentials.client.save()

    assert post_notification(spec.E2, **bearer).status_code == 401


FAST_PATH = "tracking.middleware.d1.WebhookFastPathMiddleware"
CERTIFICATE = "tracking.middleware.d1.D1ClientCertificateMiddleware"


@pytest.fixture
def fast_path(settings):
    """WEBHOOK_FAST_PATH=true: the middleware right after the certificate middleware."""
    middleware = [m for m in settings.MIDDLEWARE if m != FAST_PATH]
    middleware.insert(middleware.index(CERTIFICATE) + 1, FAST_PATH)
    settings.MIDDLEWARE = middleware


def test_the_webhook_skips_sessions_and_csrf_but_keeps_security_headers(
    issuer, staff_user, fast_path
):
    # A browser-like caller with a staff session and no CSRF token: the webhook neither reads
    # the session nor asks for CSRF, and sets no cookie.
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)

    with CaptureQueriesContext(connection) as queries:
        response = client.post(WEBHOOK, spec.E1, content_type="application/json")

    assert response.status_code == 204
    assert not [q for q in queries if "django_session" in q["sql"] or "auth_user" in q["sql"]]
    assert not response.cookies
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still ran
    # The HTML pages' middleware did not: no frame options on a JSON answer to a machine.
    assert "X-Frame-Options" not in response


def test_staff_pages_still_pass_through_every_middleware(db, fast_path):
    response = Client().get("/admin/login/")

    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    assert response["X-Frame-Options"] == "DENY"


def test_a_remembered_issuer_costs_no_lookup(issuer, post_notification, settings):
    settings.D1_ISSUER_CACHE_SECONDS = 60
    assert post_notification(spec.E1).status_code == 204

    with CaptureQueriesContext(connection) as queries:
        assert post_notification(spec.E2).status_code == 204

    assert not [q for q in queries if '"tracking_issuer"."issuer_id" =' in q["sql"]]


def test_an_issuer_switched_off_here_is_refused_at_once_even_when_remembered(
    issuer, post_notification, settings
):
    settings.D1_ISSUER_CACHE_SECONDS = 60
    assert post_notification(spec.E1).status_code == 204
    issuer.is_active = False
    issuer.save()

    refused = post_notification(spec.E2)

    assert refused.status_code == 404
    assert refused.json()["errorCode"] == "ISSUER_NOT_FOUND"


def test_an_issuer_switched_off_elsewhere_is_refused_within_the_remembered_seconds(
    issuer, post_notification, settings
):
    settings.D1_ISSUER_CACHE_SECONDS = 1
    assert post_notification(spec.E1).status_code == 204
    Issuer.objects.filter(pk=issuer.pk).update(is_active=False)  # as another process would

    assert post_notification(spec.E2).status_code == 204  # still remembered
    time.sleep(1.1)
    assert post_notification(spec.E3).status_code == 404
