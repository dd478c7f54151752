"""The smaller attacks: the token endpoint's grants and secret hashing, revived D1 tokens, the
schema, the export's audit, the login landing page, masked notes and D1's stored answers."""

from __future__ import annotations

import base64

import pytest
import responses
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_client
from tracking.d1.access import D1ClientSecretHasher
from tracking.d1.client import BODY_EXCERPT_CHARS, D1Config
from tracking.d1.clients import d1_client_create
from tracking.models import AuditEntry, CardOrder, ReconcileAttempt
from tracking.models import D1Client as D1ClientModel
from tracking.services.audit import Actor
from tracking.services.order_actions import order_acknowledge
from tracking.services.reconcile import order_reconcile

pytestmark = pytest.mark.django_db

TOKEN_URL = "/authz/d1/v1/oauth2/token"
CARD_NUMBER = "4111111111111111"


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token_request(data: str, authorization: str = ""):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return APIClient().post(
        TOKEN_URL, data, content_type="application/x-www-form-urlencoded", **extra
    )


@pytest.fixture
def credentials(issuer):
    return d1_client_create(issuer=issuer)


@pytest.fixture
def loaded(issuer, post_notification):
    for body in spec.ALL_IN_ORDER:
        post_notification(body)


# ---------------------------------------------------------------------------- token endpoint


def test_the_password_grant_answers_the_same_for_a_right_and_a_wrong_staff_password(
    credentials, staff_user
):
    auth = basic(credentials.client_id, credentials.client_secret)
    right = token_request(
        "grant_type=password&username=staff&password=staff-password", authorization=auth
    )
    wrong = token_request("grant_type=password&username=staff&password=nope", authorization=auth)

    assert right.status_code == wrong.status_code == 400
    assert right.json() == wrong.json()
    assert right.json()["error"] == "unsupported_grant_type"
    assert not AccessToken.objects.exists()


def test_client_secrets_are_kept_with_the_fast_keyed_hash(credentials):
    stored = Application.objects.get().client_secret
    assert stored.startswith(f"{D1ClientSecretHasher.algorithm}$")
    assert credentials.client_secret not in stored


PBKDF2 = "django.contrib.auth.hashers.PBKDF2PasswordHasher"


def test_a_wrong_client_secret_costs_no_slow_hash(credentials, settings, monkeypatch):
    # PBKDF2 at Django's default cost takes hundreds of milliseconds per wrong guess; the keyed
    # hash takes microseconds, so wrong secrets cannot be used to slow the portal down. Counted,
    # not timed: no wrong guess may reach the key-stretching function at all.
    import django.contrib.auth.hashers as hashers

    settings.D1_TOKEN_RATE_LIMIT = 1000
    settings.PASSWORD_HASHERS = [*settings.PASSWORD_HASHERS, PBKDF2]
    stretched = []
    real_pbkdf2 = hashers.pbkdf2
    monkeypatch.setattr(
        hashers,
        "pbkdf2",
        lambda *args, **kwargs: stretched.append(1) or real_pbkdf2(*args, **kwargs),
    )
    stored = Application.objects.get().client_secret
    assert stored.startswith(f"{D1ClientSecretHasher.algorithm}$")

    auth = basic(credentials.client_id, "x" * 128)
    for _ in range(20):
        assert token_request("grant_type=client_credentials", authorization=auth).status_code == 401

    assert stretched == []
    make_password("x" * 128, hasher="pbkdf2_sha256")  # the spy sees PBKDF2 when it does run
    assert stretched == [1]


def test_a_client_made_with_a_slow_hash_is_rehashed_on_its_next_token(credentials, settings):
    settings.PASSWORD_HASHERS = [*settings.PASSWORD_HASHERS, PBKDF2]
    Application.objects.update(
        client_secret=make_password(credentials.client_secret, hasher="pbkdf2_sha256")
    )
    auth = basic(credentials.client_id, credentials.client_secret)

    assert token_request("grant_type=client_credentials", authorization=auth).status_code == 200
    assert Application.objects.get().client_secret.startswith("d1_hmac_sha256$")
    assert token_request("grant_type=client_credentials", authorization=auth).status_code == 200


def test_ticking_a_d1_client_active_again_does_not_revive_its_tokens(
    credentials, client, post_notification, settings
):
    settings.D1_WEBHOOK_REQUIRE_BEARER = True
    auth = basic(credentials.client_id, credentials.client_secret)
    token = token_request("grant_type=client_credentials", authorization=auth).json()[
        "access_token"
    ]
    root = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    client.force_login(root)
    pk = credentials.client.pk
    url = f"/admin/tracking/d1client/{pk}/change/"

    assert client.post(url, {}).status_code == 302  # the tick box left empty: switched off
    assert not D1ClientModel.objects.get(pk=pk).is_active
    assert client.post(url, {"is_active": "on"}).status_code == 302  # and on again
    assert D1ClientModel.objects.get(pk=pk).is_active

    response = post_notification(spec.E1, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert not AccessToken.objects.exists()


# ---------------------------------------------------------------------------- read API


def test_the_schema_is_for_staff_and_integration_tokens_only(db, staff_user, client):
    outsider = get_user_model().objects.create_user("outsider", password="pw-outsider-1234")
    client.force_login(outsider)
    assert client.get("/api/schema/").status_code == 403
    assert APIClient().get("/api/schema/").status_code in (401, 403)

    client.force_login(staff_user)
    assert client.get("/api/schema/").status_code == 200
    integration = get_user_model().objects.create_user("integration", password="pw-int-12345")
    assert read_api_client(integration).get("/api/schema/").status_code == 200


# ---------------------------------------------------------------------------- admin


def test_the_csv_export_is_audited_with_its_filters_and_row_count(loaded, client, viewer_user):
    client.force_login(viewer_user)
    response = client.get(
        "/admin/tracking/cardorder/export.csv", {"carrier": "ups", "queue": "open"}
    )
    lines = b"".join(response.streaming_content).decode().splitlines()

    entry = AuditEntry.objects.get(action="order.export")
    assert entry.username == "viewer"
    assert entry.details["filters"] == {"carrier": ["ups"], "queue": ["open"]}
    assert entry.details["rows"] == len(lines) - 1
    assert entry.details["complete"] is True


def test_logging_in_without_next_lands_on_the_admin(db, client, staff_user):
    response = client.post(
        "/admin/login/", {"username": "staff", "password": "staff-password"}, follow=True
    )
    assert response.redirect_chain[0][0] == "/admin/"
    assert response.status_code == 200


def test_an_acknowledgement_note_is_stored_with_card_numbers_masked(loaded, staff_user):
    order = CardOrder.objects.get(card_id="card-000123")
    ack = order_acknowledge(
        order_id=order.pk,
        actor=Actor(user=staff_user),
        note=f"customer read {CARD_NUMBER} on the phone",
    )
    ack.refresh_from_db()
    assert CARD_NUMBER not in ack.note
    assert "1111" in ack.note and "customer read" in ack.note


# ---------------------------------------------------------------------------- D1's answers


@pytest.fixture
def d1_config(settings, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings.D1_API_BASE_URL = "https://d1.test/banking/v1"
    settings.D1_TOKEN_URL = "https://d1.test/authz/v1/oauth2/token"
    settings.D1_KEY_ID = "kid-test"
    settings.D1_PRIVATE_KEY_PATH = str(path)
    settings.D1_MAX_RETRIES = 0
    settings.D1_ISSUER_OVERRIDES = {}
    return D1Config.for_issuer(spec.ISSUER_ID)


def reconcile_card_000123() -> ReconcileAttempt:
    from tracking.d1 import client as d1_client

    d1_client._clients.clear()  # a client of this test's settings, not one cached before
    order = CardOrder.objects.get(card_id="card-000123")
    order_reconcile(order_id=order.pk)
    return ReconcileAttempt.objects.filter(order=order).latest("pk")


@responses.activate
def test_a_d1_error_body_is_stored_masked_and_capped(loaded, d1_config):
    responses.post(d1_config.token_url, json={"access_token": "tok-1", "expires_in": 900})
    body = f'{{"errorCode": "E500", "detail": "card {CARD_NUMBER} failed {"x" * 5000}"}}'
    responses.get(
        f"{d1_config.api_base_url}/issuers/{spec.ISSUER_ID}/physicalCards/card-000123/productionStatus",
        body=body,
        status=500,
    )

    attempt = reconcile_card_000123()

    assert attempt.outcome == "error" and attempt.http_status == 500
    assert CARD_NUMBER not in attempt.error
    assert "************1111" in attempt.error
    assert len(attempt.error) < BODY_EXCERPT_CHARS + 200


@responses.activate
@pytest.mark.parametrize(
    ("status", "token_body"),
    [
        (200, '{"access_token": {"value": "SECRET-TOKEN-123"}, "expires_in": "soon"}'),
        (200, "access_token=SECRET-TOKEN-123"),
        (400, '{"error": "invalid_grant", "access_token": "SECRET-TOKEN-123"}'),
    ],
)
def test_a_token_answer_body_is_never_stored(loaded, d1_config, status, token_body):
    responses.post(d1_config.token_url, body=token_body, status=status)

    attempt = reconcile_card_000123()

    assert attempt.outcome == "error"
    assert "SECRET-TOKEN-123" not in attempt.error
    assert "token" in attempt.error


def test_d1_error_text_is_masked_by_the_client_itself():
    from tracking.d1.client import D1Error

    error = D1Error("D1 failed", status=500, body=f"pan {CARD_NUMBER} " + "y" * 10_000)
    assert CARD_NUMBER not in error.body
    assert len(error.body) == BODY_EXCERPT_CHARS
