"""The webhook's gate: D1's client certificate and bearer token, as a DRF authentication class.

What is checked, in order, and what is answered (each refusal is recorded by the view):
1. an address that failed too often in the current window: 429 with Retry-After;
2. the client certificate, when required or restricted (`tracking.d1.access`): 403;
3. the bearer token, when required or presented: missing 401, unknown/expired/inactive 401
   with `WWW-Authenticate: Bearer ... error="invalid_token"`, wrong scope 403;
4. (permission) the token's issuer against the path's issuer: 403.

With nothing required and no Authorization header (the embedded default) it costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from tracking.api.token_memory import d1_token_check_remembered
from tracking.d1.access import (
    TokenCheck,
    client_address,
    client_subject_refusal,
)
from tracking.infrastructure.rate_limits import rate_limit_count, rate_limit_peek

FAILURE_SCOPE = "d1-auth-failures"
MAX_TOKEN_LENGTH = 512
REALM = 'Bearer realm="d1-notifications"'


@dataclass(frozen=True)
class D1Caller:
    """Who is posting: the issuer and client of its token, and its certificate subject."""

    issuer_id: str = ""
    client_id: str = ""
    subject: str = ""


# A failure-free address is not looked up in the shared cache again for this long: D1's own
# traffic costs no cache round trip per POST (see `rate_limit_peek`).
CLEAN_ADDRESS_SECONDS = 1.0


def _count_failure(request) -> None:
    rate_limit_count(
        scope=FAILURE_SCOPE,
        subject=client_address(request._request),
        window=settings.D1_RATE_LIMIT_WINDOW_SECONDS,
    )


def _quote(value: str) -> str:
    return value.replace("\\", "").replace('"', "'")


class D1CallerAuthentication(BaseAuthentication):
    """Authenticate D1 by its client certificate subject and its bearer token."""

    def authenticate(self, request):
        http = request._request
        header = http.META.get("HTTP_AUTHORIZATION", "")
        subject = getattr(http, "d1_client_identity", "")
        if not (
            header
            or settings.D1_WEBHOOK_REQUIRE_BEARER
            or settings.D1_REQUIRE_CLIENT_CERT
            or settings.D1_ALLOWED_CLIENT_SUBJECTS
        ):
            return None

        failures = rate_limit_peek(
            scope=FAILURE_SCOPE,
            subject=client_address(http),
            window=settings.D1_RATE_LIMIT_WINDOW_SECONDS,
            clean_for=CLEAN_ADDRESS_SECONDS,
        )
        if failures.hits >= settings.D1_AUTH_FAILURE_LIMIT:
            raise exceptions.Throttled(
                wait=failures.retry_after,
                detail="Too many failed authentications from this address.",
                code="too_many_auth_failures",
            )

        refusal = client_subject_refusal(subject)
        if refusal is not None:
            _count_failure(request)
            raise exceptions.PermissionDenied(detail=refusal[1], code=refusal[0].lower())

        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            if settings.D1_WEBHOOK_REQUIRE_BEARER:
                _count_failure(request)
                raise exceptions.NotAuthenticated(
                    detail="A bearer token from the portal's token endpoint is required.",
                    code="missing_token",
                )
            return (AnonymousUser(), D1Caller(subject=subject))

        token = token.strip()
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            check = TokenCheck(error="invalid_token", error_description="The token is malformed.")
        else:
            check = d1_token_check_remembered(token=token)
        if not check.is_valid:
            _count_failure(request)
            request._d1_challenge = (
                f'error="{check.error}", error_description="{_quote(check.error_description)}"'
            )
            if check.error == "insufficient_scope":  # RFC 6750 §3.1: a 403, not a 401
                raise exceptions.PermissionDenied(check.error_description, code=check.error)
            raise exceptions.AuthenticationFailed(check.error_description, code=check.error)
        return (
            AnonymousUser(),
            D1Caller(issuer_id=check.issuer_id, client_id=check.client_id, subject=subject),
        )

    def authenticate_header(self, request) -> str:
        challenge = getattr(request, "_d1_challenge", "")
        return f"{REALM}, {challenge}" if challenge else REALM


class D1CallerMayNotifyIssuer(BasePermission):
    """A token is bound to its issuer: it may post only to that issuer's path."""

    message = "This access token was issued for another issuer."
    code = "token_issuer_mismatch"

    def has_permission(self, request, view) -> bool:
        caller = request.auth
        if not isinstance(caller, D1Caller) or not caller.client_id:
            return True  # no token was presented and none is required
        if caller.issuer_id == view.kwargs.get("issuer_id"):
            return True
        _count_failure(request)
        return False
