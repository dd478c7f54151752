"""How D1 proves it is D1: the token endpoint, bearer tokens bound to issuers, client certificates.

Every refusal of the webhook is answered in D1's error shape and counted in its source's tally.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

from tests.fixtures import spec_examples as spec
from tracking.d1.clients import d1_client_create, d1_client_deactivate
from tracking.models import CardOrder, Issuer, NotificationDelivery, RefusalTally

pytestmark = pytest.mark.django_db

TOKEN_URL = "/authz/d1/v1/oauth2/token"
PROXY = "10.0.0.5"
SUBJECT = "CN=d1-notifications.thalescloud.io,O=Thales,C=FR"


@pytest.fixture
def other_issuer(db) -> Issuer:
    return Issuer.objects.create(issuer_id="OTHERBANK1", name="Other Bank")


@pytest.fixture
def credentials(issuer):
    return d1_client_create(issuer=issuer)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def form(data: dict) -> str:
    return "&".join(f"{k}={v}" for k, v in data.items())


def token_for(credentials) -> str:
    response = APIClient().post(
        TOKEN_URL,
        form({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret),
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def last_delivery() -> NotificationDelivery:
    return NotificationDelivery.objects.order_by("-id").first()


def last_refusal() -> RefusalTally:
    return RefusalTally.objects.order_by("-last_at", "-id").first()


# ---------------------------------------------------------------------------- token endpoint


def test_token_endpoint_answers_the_standard_client_credentials_response(credentials):
    response = APIClient().post(
        TOKEN_URL,
        form({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret),
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "notifications"
    assert body["access_token"]
    expires_at = dt.datetime.fromisoformat(body["expires_at"])
    assert expires_at.tzinfo is not None
    assert response["Cache-Control"].startswith("no-store")


def test_tokens_and_secrets_are_stored_only_as_hashes(credentials):
    token = token_for(credentials)

    stored = AccessToken.objects.get()
    assert stored.token == ""
    assert stored.token_checksum == hashlib.sha256(token.encode()).hexdigest()
    application = Application.objects.get()
    assert credentials.client_secret not in application.client_secret


@pytest.mark.parametrize(
    ("data", "authorization", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, "wrong-secret", 401, "invalid_client"),
        ({"grant_type": "password", "username": "x", "password": "y"}, None, 400, None),
        ({"grant_type": "client_credentials", "scope": "admin"}, None, 400, "invalid_scope"),
        ({}, None, 400, None),
    ],
)
def test_token_endpoint_refuses_bad_requests(credentials, data, authorization, status, error):
    secret = authorization or credentials.client_secret
    response = APIClient().post(
        TOKEN_URL,
        form(data),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(credentials.client_id, secret),
    )

    assert response.status_code == status
    if error:
        assert response.json()["error"] == error
    assert not AccessToken.objects.exists()


def test_inactive_clients_and_clients_without_an_issuer_get_no_token(credentials, issuer):
    d1_client_deactivate(client=credentials.client)
    assert request_token_status(credentials) == 401

    unbound_secret = "unbound-secret-" + "x" * 30
    unbound = Application.objects.create(
        name="not a D1 client",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=unbound_secret,
    )
    response = APIClient().post(
        TOKEN_URL,
        form({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(unbound.client_id, unbound_secret),
    )
    assert response.status_code == 401


def request_token_status(credentials) -> int:
    return (
        APIClient()
        .post(
            TOKEN_URL,
            form({"grant_type": "client_credentials"}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret),
        )
        .status_code
    )


def test_token_endpoint_is_rate_limited_per_address(credentials, settings):
    settings.D1_TOKEN_RATE_LIMIT = 3
    statuses = [request_token_status(credentials) for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    response = APIClient().post(
        TOKEN_URL,
        form({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= settings.D1_RATE_LIMIT_WINDOW_SECONDS + 1


def test_token_endpoint_requires_the_client_certificate_when_configured(credentials, settings):
    settings.D1_REQUIRE_CLIENT_CERT = True
    settings.D1_TRUSTED_PROXIES = [f"{PROXY}/32"]
    assert request_token_status(credentials) == 403

    client = APIClient(REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_S_DN=SUBJECT)
    response = client.post(
        TOKEN_URL,
        form({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret),
    )
    assert response.status_code == 200


def test_create_d1_client_command_prints_the_secret_once(issuer, capsys):
    call_command("create_d1_client", issuer.issuer_id)

    out = capsys.readouterr().out
    values = dict(line.split("=", 1) for line in out.strip().splitlines())
    application = Application.objects.get(client_id=values["client_id"])
    assert application.d1_client.issuer == issuer
    assert values["client_secret"] not in application.client_secret  # hashed at rest
    response = APIClient().post(
        TOKEN_URL,
        form({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(values["client_id"], values["client_secret"]),
    )
    assert response.status_code == 200


# ---------------------------------------------------------------------------- bearer on the webhook


@pytest.fixture
def bearer_required(settings):
    settings.D1_WEBHOOK_REQUIRE_BEARER = True


def test_webhook_accepts_a_valid_token_of_its_issuer(
    bearer_required, credentials, post_notification
):
    token = token_for(credentials)

    response = post_notification(spec.E1, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 204
    assert CardOrder.objects.filter(card_id="card-000123").exists()


def test_webhook_without_a_token_answers_401_with_a_bearer_challenge(
    bearer_required, issuer, post_notification
):
    response = post_notification(spec.E1, HTTP_X_CORRELATION_ID="corr-401")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer ")
    assert response.json()["errorCode"] == "MISSING_TOKEN"
    refused = last_refusal()
    assert (refused.status_code, refused.error_code) == (401, "MISSING_TOKEN")
    assert refused.issuer_id_in_path == issuer.issuer_id
    assert refused.correlation_id == "corr-401"
    assert not NotificationDelivery.objects.exists()  # an unauthenticated caller's body is not kept
    assert not CardOrder.objects.exists()


@pytest.mark.parametrize(
    "token", ["not-a-token", "x" * 600, "naïve-token", ""], ids=["unknown", "long", "utf8", "empty"]
)
def test_webhook_refuses_invalid_tokens_with_401(bearer_required, issuer, post_notification, token):
    response = post_notification(spec.E1, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert response.json()["errorCode"] == "INVALID_TOKEN"
    assert last_refusal().status_code == 401


def test_webhook_refuses_an_expired_token(bearer_required, credentials, post_notification):
    token = token_for(credentials)
    AccessToken.objects.update(expires=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))

    response = post_notification(spec.E1, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401
    assert "expired" in response["WWW-Authenticate"]
    assert last_refusal().error_code == "INVALID_TOKEN"


def test_tokens_of_a_switched_off_client_are_refused_at_once(
    bearer_required, credentials, post_notification
):
    token = token_for(credentials)
    credentials.client.is_active = False
    credentials.client.save()

    response = post_notification(spec.E1, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401


def test_a_token_of_issuer_a_is_refused_on_issuer_b_with_403(
    bearer_required, credentials, other_issuer, post_notification
):
    token = token_for(credentials)

    response = post_notification(
        spec.E1, issuer_id=other_issuer.issuer_id, HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert response.status_code == 403
    assert response.json() == {
        "errorCode": "TOKEN_ISSUER_MISMATCH",
        "error": "This access token was issued for another issuer.",
    }
    refused = last_refusal()
    assert (refused.status_code, refused.issuer_id_in_path) == (403, other_issuer.issuer_id)
    assert not CardOrder.objects.exists()


def test_a_presented_token_is_checked_even_when_none_is_required(issuer, post_notification):
    assert post_notification(spec.E1).status_code == 204
    response = post_notification(spec.E2, HTTP_AUTHORIZATION="Bearer forged")
    assert response.status_code == 401


def test_failed_authentications_are_rate_limited_per_address(
    bearer_required, settings, credentials, post_notification
):
    settings.D1_AUTH_FAILURE_LIMIT = 3
    token = token_for(credentials)
    statuses = [
        post_notification(spec.E1, HTTP_AUTHORIZATION="Bearer guess").status_code for _ in range(3)
    ]
    blocked = post_notification(spec.E1, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert statuses == [401, 401, 401]
    assert blocked.status_code == 429  # even a good token waits until the window ends
    assert int(blocked["Retry-After"]) >= 1
    assert blocked.json()["errorCode"] == "TOO_MANY_AUTH_FAILURES"
    assert last_refusal().status_code == 429
    other_address = post_notification(
        spec.E1, HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR="192.0.2.7"
    )
    assert other_address.status_code == 204


def test_an_address_with_clean_posts_is_still_stopped_as_soon_as_it_fails_too_often(
    bearer_required, settings, credentials, post_notification
):
    settings.D1_AUTH_FAILURE_LIMIT = 3
    good = {"HTTP_AUTHORIZATION": f"Bearer {token_for(credentials)}"}
    assert post_notification(spec.E1, **good).status_code == 204  # remembered as clean
    statuses = [
        post_notification(spec.E1, HTTP_AUTHORIZATION="Bearer guess").status_code for _ in range(3)
    ]

    assert statuses == [401, 401, 401]
    assert post_notification(spec.E2, **good).status_code == 429


def test_failures_counted_by_another_process_stop_an_address_within_a_second(
    bearer_required, settings, credentials, post_notification
):
    from tracking.api.d1_auth import CLEAN_ADDRESS_SECONDS, FAILURE_SCOPE
    from tracking.infrastructure.rate_limits import rate_limit_count

    settings.D1_AUTH_FAILURE_LIMIT = 3
    good = {"HTTP_AUTHORIZATION": f"Bearer {token_for(credentials)}"}
    assert post_notification(spec.E1, **good).status_code == 204
    for _ in range(3):  # as another web process counts them, in the shared cache
        rate_limit_count(
            scope=FAILURE_SCOPE, subject="127.0.0.1", window=settings.D1_RATE_LIMIT_WINDOW_SECONDS
        )

    time.sleep(CLEAN_ADDRESS_SECONDS + 0.1)
    assert post_notification(spec.E2, **good).status_code == 429


# ---------------------------------------------------------------------------- client certificates


@pytest.fixture
def behind_proxy(settings):
    settings.D1_TRUSTED_PROXIES = [f"{PROXY}/32", "2001:db8::/64"]


def test_the_verified_subject_from_the_trusted_proxy_is_kept_on_the_delivery(
    behind_proxy, issuer, post_notification
):
    response = post_notification(
        spec.E1,
        REMOTE_ADDR=PROXY,
        HTTP_X_SSL_CLIENT_S_DN=SUBJECT,
        HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.9",
    )

    assert response.status_code == 204
    delivery = last_delivery()
    assert delivery.client_identity == SUBJECT
    assert delivery.remote_addr == "203.0.113.9"  # the hop our proxy appended


def test_the_header_is_ignored_from_any_other_address(behind_proxy, issuer, post_notification):
    response = post_notification(
        spec.E1,
        REMOTE_ADDR="203.0.113.50",
        HTTP_X_SSL_CLIENT_S_DN=SUBJECT,
        HTTP_X_FORWARDED_FOR="10.9.9.9",
    )

    assert response.status_code == 204
    delivery = last_delivery()
    assert delivery.client_identity == ""
    assert delivery.remote_addr == "203.0.113.50"


@pytest.mark.parametrize(
    ("remote", "header", "error_code"),
    [
        (PROXY, None, "CLIENT_CERTIFICATE_REQUIRED"),
        ("203.0.113.50", SUBJECT, "CLIENT_CERTIFICATE_REQUIRED"),
        (PROXY, "CN=someone-else", "CLIENT_CERTIFICATE_NOT_ALLOWED"),
    ],
    ids=["absent", "untrusted-address", "not-allowed"],
)
def test_a_required_certificate_that_is_absent_untrusted_or_unknown_answers_403(
    behind_proxy, settings, issuer, post_notification, remote, header, error_code
):
    settings.D1_REQUIRE_CLIENT_CERT = True
    settings.D1_ALLOWED_CLIENT_SUBJECTS = [SUBJECT]
    extra = {"REMOTE_ADDR": remote}
    if header:
        extra["HTTP_X_SSL_CLIENT_S_DN"] = header

    response = post_notification(spec.E1, **extra)

    assert response.status_code == 403
    assert response.json()["errorCode"] == error_code
    assert last_refusal().status_code == 403
    assert not CardOrder.objects.exists()
    accepted = post_notification(spec.E1, REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_S_DN=SUBJECT)
    assert accepted.status_code == 204


def test_certificate_and_bearer_together(behind_proxy, settings, credentials, post_notification):
    settings.D1_REQUIRE_CLIENT_CERT = True
    settings.D1_WEBHOOK_REQUIRE_BEARER = True
    token = token_for_via_proxy(credentials)

    response = post_notification(
        spec.E1,
        REMOTE_ADDR=PROXY,
        HTTP_X_SSL_CLIENT_S_DN=SUBJECT,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.status_code == 204
    assert last_delivery().client_identity == SUBJECT


def token_for_via_proxy(credentials) -> str:
    client = APIClient(REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_S_DN=SUBJECT)
    response = client.post(
        TOKEN_URL,
        form({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret),
    )
    assert response.status_code == 200
    return response.json()["access_token"]


def test_the_bearer_check_costs_one_query(settings, credentials, post_notification):
    token = token_for(credentials)
    post_notification(spec.E1)

    def queries_for_a_repeat(**extra) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert post_notification(spec.E1, **extra).status_code == 204
        return len(queries)

    without = queries_for_a_repeat()
    settings.D1_WEBHOOK_REQUIRE_BEARER = True
    with_token = queries_for_a_repeat(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert with_token - without == 1
