"""How D1 proves it is D1 (SPEC §1.3, §5.2, §5.3): proxy trust, client certificates, bearer tokens.

- mTLS ends at the reverse proxy, which forwards the verified certificate subject in
  `D1_CLIENT_CERT_HEADER`; that header (and `X-Forwarded-For`) is believed only when the request
  comes from one of `D1_TRUSTED_PROXIES`.
- Bearer tokens are issued by our own token endpoint (django-oauth-toolkit, client_credentials)
  to a D1 client that is bound to one issuer; `d1_token_check` tells whose token it is in one
  indexed query (tokens are stored as SHA-256 checksums only).
- Client secrets are 128 random characters, kept as a keyed HMAC (`D1ClientSecretHasher`):
  checking a wrong one costs microseconds, so wrong secrets cannot slow the portal down the way
  PBKDF2 (hundreds of milliseconds each) would.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.contrib.auth.hashers import BasePasswordHasher, identify_hasher, make_password
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from oauth2_provider.models import get_access_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator

MAX_SUBJECT_LENGTH = 255


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def is_trusted_proxy(address: str) -> bool:
    """Whether `address` is one of the reverse proxies whose forwarded headers we believe."""
    proxies = tuple(settings.D1_TRUSTED_PROXIES)
    if not proxies or not address:
        return False
    ip = _ip(address)
    return ip is not None and any(ip in network for network in _networks(proxies))


def client_address(request: HttpRequest) -> str:
    """The caller's address: the proxy's `X-Forwarded-For` hop when the proxy is trusted."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if is_trusted_proxy(remote):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        # The rightmost entry is the one our proxy appended; the rest came from the client.
        hop = forwarded.rsplit(",", 1)[-1].strip() if forwarded else ""
        if hop and _ip(hop) is not None:
            return hop
    return remote


def client_cert_meta_key() -> str:
    return "HTTP_" + settings.D1_CLIENT_CERT_HEADER.upper().replace("-", "_")


def verified_client_subject(request: HttpRequest) -> str:
    """The client certificate subject the trusted proxy verified, or "" when there is none."""
    subject = request.META.get(client_cert_meta_key(), "")
    if not subject or not is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
        return ""
    subject = "".join(ch for ch in subject if ch.isprintable())
    return subject[:MAX_SUBJECT_LENGTH]


def client_subject_refusal(subject: str) -> tuple[str, str] | None:
    """(errorCode, error) when the certificate requirement refuses `subject`, else None."""
    if not subject:
        if settings.D1_REQUIRE_CLIENT_CERT:
            return (
                "CLIENT_CERTIFICATE_REQUIRED",
                "A client certificate verified by the portal's TLS proxy is required.",
            )
        return None
    allowed = settings.D1_ALLOWED_CLIENT_SUBJECTS
    if allowed and subject not in allowed:
        return ("CLIENT_CERTIFICATE_NOT_ALLOWED", "This client certificate is not accepted.")
    return None


# ---------------------------------------------------------------------------- bearer tokens


@dataclass(frozen=True)
class TokenCheck:
    """Whose token it is, or why it is refused (`error` is an RFC 6750 error, then a text)."""

    issuer_id: str = ""
    client_id: str = ""
    error: str = ""
    error_description: str = ""

    @property
    def is_valid(self) -> bool:
        return not self.error


def d1_token_check(*, token: str) -> TokenCheck:
    """Look up a bearer token by its checksum and say whose it is (one indexed query).

    Refused: unknown or revoked, expired, lacking the notifications scope, or belonging to a
    client that is not (or no longer) an active D1 client.
    """
    checksum = hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()
    row = (
        get_access_token_model()
        .objects.filter(token_checksum=checksum)
        .values(
            "expires",
            "scope",
            "application__client_id",
            "application__d1_client__is_active",
            "application__d1_client__issuer__issuer_id",
        )
        .first()
    )
    if row is None:
        return TokenCheck(error="invalid_token", error_description="The access token is unknown.")
    if row["expires"] <= timezone.now():
        return TokenCheck(error="invalid_token", error_description="The access token expired.")
    if settings.D1_TOKEN_SCOPE not in (row["scope"] or "").split():
        return TokenCheck(
            error="insufficient_scope",
            error_description=f"The access token lacks the {settings.D1_TOKEN_SCOPE} scope.",
        )
    if not row["application__d1_client__is_active"]:
        return TokenCheck(
            error="invalid_token", error_description="The access token's client is not active."
        )
    return TokenCheck(
        issuer_id=row["application__d1_client__issuer__issuer_id"],
        client_id=row["application__client_id"],
    )


class D1ClientSecretHasher(BasePasswordHasher):
    """HMAC-SHA256 keyed with SECRET_KEY (or one of its fallbacks), with a per-secret salt.

    Only for generated, high-entropy secrets (D1 client secrets): a slow hash protects guessable
    passwords, and costs the server on every wrong guess. Never used for user passwords: the
    PBKDF2 hasher stays first in PASSWORD_HASHERS.
    """

    algorithm = "d1_hmac_sha256"

    def _digest(self, password: str, salt: str, secret: str | bytes) -> str:
        return salted_hmac(
            f"{self.algorithm}:{salt}", password, secret=secret, algorithm="sha256"
        ).hexdigest()

    def encode(self, password: str, salt: str) -> str:
        self._check_encode_args(password, salt)
        return f"{self.algorithm}${salt}${self._digest(password, salt, settings.SECRET_KEY)}"

    def decode(self, encoded: str) -> dict:
        algorithm, salt, digest = encoded.split("$", 2)
        return {"algorithm": algorithm, "salt": salt, "hash": digest}

    def verify(self, password: str, encoded: str) -> bool:
        decoded = self.decode(encoded)
        if decoded["algorithm"] != self.algorithm:
            return False
        return any(
            constant_time_compare(self._digest(password, decoded["salt"], key), decoded["hash"])
            for key in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
        )

    def safe_summary(self, encoded: str) -> dict:
        decoded = self.decode(encoded)
        return {"algorithm": decoded["algorithm"], "salt": decoded["salt"][:4] + "…"}

    def must_update(self, encoded: str) -> bool:
        return False

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass


GRANT_CLIENT_CREDENTIALS = "client_credentials"


class D1OAuth2Validator(OAuth2Validator):
    """django-oauth-toolkit's validator: client_credentials only, to active D1 clients."""

    def authenticate_client(self, request, *args, **kwargs) -> bool:
        if request.grant_type != GRANT_CLIENT_CREDENTIALS:
            return False
        if not super().authenticate_client(request, *args, **kwargs):
            return False
        binding = getattr(request.client, "d1_client", None)
        return bool(binding and binding.is_active and binding.issuer.is_active)

    def authenticate_user(self, *args, **kwargs) -> bool:
        return False  # no password grant: staff passwords are never checked here

    def _check_secret(self, provided_secret, stored_secret) -> bool:
        if not super()._check_secret(provided_secret, stored_secret):
            return False
        _upgrade_slow_secret_hash(provided_secret, stored_secret)
        return True


def _upgrade_slow_secret_hash(secret: str, stored: str) -> None:
    """A client made before the fast hasher keeps a PBKDF2 hash; rehash it on its next success."""
    try:
        if identify_hasher(stored).algorithm == D1ClientSecretHasher.algorithm:
            return
    except ValueError:
        return
    from oauth2_provider.models import get_application_model

    get_application_model().objects.filter(client_secret=stored).update(
        client_secret=make_password(secret, hasher=D1ClientSecretHasher.algorithm)
    )
