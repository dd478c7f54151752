"""Our client for D1's on-demand API, `D1ApiClient`: JWT-bearer grant (ES256), a shared token
cache, productionStatus.

One `requests.Session` per client (mTLS certificate and CA from settings), explicit connect and
read timeouts, retries with backoff and jitter on 429/502/503/504 and network failures, and every
failure raised as `D1Error` carrying the HTTP status and a short body. Logs carry ids, statuses
and error codes only, never payloads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import stat
import threading
import time
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.cache import cache

from tracking.domain.masking import free_text_mask
from tracking.models import KEY_ID_PATTERN, Issuer

logger = logging.getLogger(__name__)

JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# D1 refuses an assertion whose exp is more than 15 minutes ahead; 5 leaves room for clock skew.
ASSERTION_LIFETIME_SECONDS = 5 * 60
# Refresh this long before the token expires (or at half its life when it is shorter than that).
TOKEN_REFRESH_MARGIN_SECONDS = 60
# Only one worker fetches a token at a time; the others poll the cache meanwhile.
TOKEN_LOCK_TIMEOUT_SECONDS = 15
TOKEN_WAIT_POLL_SECONDS = 0.05
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
BODY_EXCERPT_CHARS = 300
# How much of an answer is looked at for the excerpt (masked, then cut to BODY_EXCERPT_CHARS).
BODY_SCAN_CHARS = 4096
ERROR_CODE_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# A key id names a file in D1_KEY_DIR: no separators, no leading dot.
# An EC P-256 private key in PEM is about 250 bytes; anything much larger is not a key.
MAX_KEY_BYTES = 16 * 1024
CARD_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
CORRELATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class D1Error(Exception):
    """Any failure talking to D1. `status` is None when no HTTP answer came back."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retryable: bool = False,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        # Staff read this (a reconcile attempt's error): card numbers masked, length capped.
        self.body = free_text_mask(body[:BODY_SCAN_CHARS])[:BODY_EXCERPT_CHARS]
        self.retryable = retryable
        self.error_code = error_code

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.error_code:
            parts.append(f"errorCode={self.error_code}")
        return " ".join(parts)


class D1CardNotFoundError(D1Error):
    """D1 answered 404: it does not know this card (unknown at D1)."""


class D1ConfigurationError(D1Error):
    """The settings do not say how to reach or authenticate to D1 for this issuer."""


@dataclass(frozen=True)
class D1Config:
    """Everything needed to call D1 for one issuer; built from settings by `for_issuer`."""

    issuer_id: str
    api_base_url: str
    token_url: str
    key_id: str
    private_key_path: str
    client_cert: str = ""
    client_key: str = ""
    ca_bundle: str = ""
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retry_after_max: float = 30.0

    @classmethod
    def for_issuer(cls, issuer: Issuer | str, *, key_id: str | None = None) -> D1Config:
        """The D1_* settings, overlaid with D1_ISSUER_OVERRIDES[issuer_id] (field names), then
        with the issuer's own key: unless the overrides name a key file, an issuer with a key
        id (Issuer.d1_key_id, or `key_id`) signs with <D1_KEY_DIR>/<key_id>.pem.
        """
        issuer_id = issuer if isinstance(issuer, str) else issuer.issuer_id
        if key_id is None:
            key_id = "" if isinstance(issuer, str) else issuer.d1_key_id
        values: dict[str, Any] = {
            "issuer_id": issuer_id,
            "api_base_url": settings.D1_API_BASE_URL,
            "token_url": settings.D1_TOKEN_URL,
            "key_id": settings.D1_KEY_ID,
            "private_key_path": settings.D1_PRIVATE_KEY_PATH,
            "client_cert": settings.D1_CLIENT_CERT,
            "client_key": settings.D1_CLIENT_KEY,
            "ca_bundle": settings.D1_CA_BUNDLE,
            "connect_timeout": float(settings.D1_CONNECT_TIMEOUT),
            "read_timeout": float(settings.D1_READ_TIMEOUT),
            "max_retries": int(settings.D1_MAX_RETRIES),
            "backoff_base": float(settings.D1_BACKOFF_BASE),
            "backoff_cap": float(settings.D1_BACKOFF_CAP),
            "retry_after_max": float(settings.D1_RETRY_AFTER_MAX),
        }
        overrides = (settings.D1_ISSUER_OVERRIDES or {}).get(issuer_id, {})
        known = {field.name for field in fields(cls)} - {"issuer_id"}
        unknown = set(overrides) - known
        if unknown:
            raise D1ConfigurationError(
                f"D1_ISSUER_OVERRIDES[{issuer_id!r}] has unknown keys: {sorted(unknown)}"
            )
        values.update(overrides)
        if key_id and "private_key_path" not in overrides:
            values["key_id"] = key_id
            values["private_key_path"] = key_dir_path(key_id)
        return cls(**values)


def d1_url(base_url: str, *segments: str) -> str:
    """`base_url` and each path segment quoted whole: no id can add a path, query or host."""
    return "/".join([base_url.rstrip("/"), *(quote(str(s), safe="") for s in segments)])


def key_dir_path(key_id: str) -> str:
    """<D1_KEY_DIR>/<key_id>.pem; raises D1ConfigurationError for a key id that is not a name."""
    if not re.fullmatch(KEY_ID_PATTERN, key_id):
        raise D1ConfigurationError(f"the D1 key id {key_id[:100]!r} is not a valid file name")
    folder = getattr(settings, "D1_KEY_DIR", "")
    if not folder:
        raise D1ConfigurationError(
            f"the D1 key id {key_id!r} needs D1_KEY_DIR, the folder of issuers' keys"
        )
    return str(Path(folder) / f"{key_id}.pem")


def read_key_file(path: str) -> bytes:
    """The bytes of a key file: a regular file under MAX_KEY_BYTES, or D1ConfigurationError.

    Opened without blocking and checked before reading, so a device (/dev/zero), a pipe or a
    huge file costs nothing and says what is wrong.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise D1ConfigurationError(f"cannot open the D1 private key ({exc.strerror})") from exc
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise D1ConfigurationError("the D1 private key path is not a regular file")
        data = handle.read(MAX_KEY_BYTES + 1)
    if len(data) > MAX_KEY_BYTES:
        raise D1ConfigurationError(
            f"the D1 private key file is larger than {MAX_KEY_BYTES // 1024} KiB: not a key"
        )
    return data


class D1ApiClient:
    """Calls D1 on behalf of one issuer; safe to share between threads of one process."""

    def __init__(self, config: D1Config) -> None:
        self.config = config
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if config.client_cert:
            self.session.cert = (
                (config.client_cert, config.client_key) if config.client_key else config.client_cert
            )
        if config.ca_bundle:
            self.session.verify = config.ca_bundle
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the environment override
        # session.verify, so both are passed again on every request, where they always win.
        self._tls_options: dict[str, Any] = {"verify": self.session.verify}
        if self.session.cert:
            self._tls_options["cert"] = self.session.cert
        self._private_key: ec.EllipticCurvePrivateKey | None = None
        self._jitter = random.Random()

    @classmethod
    def for_issuer(cls, issuer: Issuer | str) -> D1ApiClient:
        """A new client (its own connections and token lookups); see `d1_api_client_for`."""
        return cls(D1Config.for_issuer(issuer))

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ on-demand API
    def get_production_status(
        self, card_id: str, *, correlation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The card order's latest operation items as D1 returns them.

        D1 says only that the answer "uses the same operations object" as the notifications:
        `{"operations": [...]}`, a bare operation object and a list of them are all read
        (`production_status_operations`); any other body is a D1Error keeping it (masked, capped).

        Raises D1CardNotFoundError on 404 and D1Error on any other failure; a 401 renews the
        access token once and tries again.
        """
        correlation_id = correlation_id_check(correlation_id)
        if not CARD_ID_PATTERN.match(card_id):
            raise D1Error(f"card id {card_id!r} is not a valid D1 cardId", retryable=False)
        url = d1_url(
            self.config.api_base_url,
            "issuers",
            self.config.issuer_id,
            "physicalCards",
            card_id,
            "productionStatus",
        )
        log_ids = {"issuer_id": self.config.issuer_id, "card_id": card_id}

        token = self.access_token()
        response = self._send("GET", url, correlation_id, log_ids, token=token)
        if response.status_code == 401:
            logger.info(
                "D1 refused the access token, renewing once: %s correlation=%s",
                _ids_text(log_ids),
                correlation_id,
            )
            token = self.access_token(stale_token=token)
            response = self._send("GET", url, correlation_id, log_ids, token=token)

        if response.status_code == 404:
            raise _error_from(response, "card unknown at D1", error_class=D1CardNotFoundError)
        if response.status_code != 200:
            raise _error_from(response, "productionStatus failed")
        try:
            operations = production_status_operations(response.json())
        except ValueError as exc:
            # Not chained: the parse error may quote the body, which is kept masked instead.
            raise D1Error(
                f"productionStatus answered an unreadable body ({exc})",
                status=response.status_code,
                body=response.text,
            ) from None
        return operations

    # ------------------------------------------------------------------ access token
    def access_token(self, *, stale_token: str | None = None) -> str:
        """A valid bearer token from the shared cache, fetched once across workers when missing.

        `stale_token` is one D1 just refused: it is dropped from the cache and never returned.
        """
        key = self.token_cache_key()
        lock_key = f"{key}:lock"
        if stale_token is not None:
            cached = cache.get(key)
            if isinstance(cached, dict) and cached.get("token") == stale_token:
                cache.delete(key)
        token = _token_usable(cache.get(key), refused=stale_token)
        if token:
            return token

        give_up_at = time.monotonic() + 2 * TOKEN_LOCK_TIMEOUT_SECONDS
        while True:
            if cache.add(lock_key, "locked", timeout=TOKEN_LOCK_TIMEOUT_SECONDS):
                try:
                    # Another worker may have stored a fresh token between our read and the lock.
                    token = _token_usable(cache.get(key), refused=stale_token)
                    if token:
                        return token
                    token, expires_in = self._token_fetch()
                    lifetime = max(
                        1.0, expires_in - min(TOKEN_REFRESH_MARGIN_SECONDS, expires_in / 2)
                    )
                    # The refresh moment travels with the token, so every worker (and any cache
                    # backend, whose own expiry may run on another clock) agrees when it is due.
                    entry = {"token": token, "refresh_at": time.time() + lifetime}
                    cache.set(key, entry, timeout=lifetime)
                    return token
                finally:
                    cache.delete(lock_key)
            time.sleep(TOKEN_WAIT_POLL_SECONDS)
            token = _token_usable(cache.get(key), refused=stale_token)
            if token:
                return token
            if time.monotonic() > give_up_at:
                raise D1Error("timed out waiting for another worker's D1 token", retryable=True)

    def token_cache_key(self) -> str:
        # Keyed by where and with which key the token was obtained, so a config change never
        # reuses a token minted for another endpoint or key.
        digest = hashlib.sha256(
            f"{self.config.token_url}|{self.config.key_id}".encode()
        ).hexdigest()
        return f"d1:access-token:{self.config.issuer_id}:{digest[:16]}"

    def _token_fetch(self) -> tuple[str, float]:
        correlation_id = correlation_id_check(None)
        log_ids = {"issuer_id": self.config.issuer_id}
        response = self._send(
            "POST",
            self.config.token_url,
            correlation_id,
            log_ids,
            data={"grant_type": JWT_BEARER_GRANT_TYPE, "assertion": self._assertion_build()},
        )
        # A token answer may hold a token (even a malformed one): its body is never kept.
        if response.status_code != 200:
            raise _error_from(response, "D1 token request failed", keep_body=False)
        try:
            payload = response.json()
            token = str(payload["access_token"])
            expires_in = float(payload.get("expires_in") or 900)
        except (ValueError, KeyError, TypeError) as exc:
            # Not chained: the parse error may quote the body.
            raise D1Error(
                f"D1 token endpoint answered an unreadable body ({type(exc).__name__})",
                status=response.status_code,
            ) from None
        logger.info(
            "D1 access token obtained: %s correlation=%s expires_in=%s",
            _ids_text(log_ids),
            correlation_id,
            expires_in,
        )
        return token, expires_in

    def _assertion_build(self) -> str:
        """The JWT-bearer grant (RFC 7523): ES256, kid header, iss = sub = issuerId."""
        if not self.config.key_id or not self.config.private_key_path:
            raise D1ConfigurationError(
                f"no D1 key id or private key path configured for issuer {self.config.issuer_id}"
            )
        now = int(time.time())
        claims = {
            "iss": self.config.issuer_id,
            "sub": self.config.issuer_id,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        }
        return jwt.encode(
            claims,
            self._signing_key(),
            algorithm="ES256",
            headers={"kid": self.config.key_id, "typ": "JWT"},
        )

    def _signing_key(self) -> ec.EllipticCurvePrivateKey:
        if self._private_key is None:
            data = read_key_file(self.config.private_key_path)
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                raise D1ConfigurationError(
                    f"cannot read the D1 private key for issuer {self.config.issuer_id}"
                ) from exc
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise D1ConfigurationError("the D1 private key must be an EC (P-256) key")
            self._private_key = key
        return self._private_key

    # ------------------------------------------------------------------ transport
    def _send(
        self,
        method: str,
        url: str,
        correlation_id: str,
        log_ids: dict[str, str],
        *,
        token: str | None = None,
        data: dict[str, str] | None = None,
    ) -> requests.Response:
        """One request with retries; returns the first answer that is not retried.

        429/502/503/504, connection errors and timeouts are retried up to max_retries times;
        when they persist the last one is raised as a retryable D1Error.
        """
        headers = {"x-correlation-id": correlation_id}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        timeout = (self.config.connect_timeout, self.config.read_timeout)
        attempt = 0
        while True:
            started = time.monotonic()
            retry_after: float | None = None
            try:
                response = self.session.request(
                    method, url, headers=headers, data=data, timeout=timeout, **self._tls_options
                )
            except requests.Timeout as exc:
                error = D1Error(f"D1 call timed out ({type(exc).__name__})", retryable=True)
                error.__cause__ = exc
            except requests.RequestException as exc:
                error = D1Error(f"D1 unreachable ({type(exc).__name__})", retryable=True)
                error.__cause__ = exc
            else:
                elapsed_ms = round((time.monotonic() - started) * 1000)
                logger.info(
                    "D1 %s answered %s: %s correlation=%s errorCode=%s attempt=%d elapsed_ms=%d",
                    method,
                    response.status_code,
                    _ids_text(log_ids),
                    correlation_id,
                    _error_code(response) or "-",
                    attempt,
                    elapsed_ms,
                )
                if response.status_code not in RETRIED_STATUSES:
                    return response
                error = _error_from(response, "D1 temporarily unavailable")
                if response.status_code == 429:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))

            if attempt >= self.config.max_retries:
                raise error
            attempt += 1
            delay = self._delay(attempt=attempt, retry_after=retry_after)
            logger.warning(
                "D1 call failed, retry %d in %.2fs: %s correlation=%s (%s)",
                attempt,
                delay,
                _ids_text(log_ids),
                correlation_id,
                error,
            )
            time.sleep(delay)

    def _delay(self, *, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.retry_after_max)
        ceiling = min(self.config.backoff_cap, self.config.backoff_base * 2 ** (attempt - 1))
        # Equal jitter: at least half the exponential delay, spread so workers don't retry in step.
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)


_clients: dict[D1Config, D1ApiClient] = {}
_clients_lock = threading.Lock()


def d1_api_client_for(issuer: Issuer | str) -> D1ApiClient:
    """The client of an issuer (settings, D1_ISSUER_OVERRIDES, then its own key id; see
    `D1Config.for_issuer`): one per configuration and process, so connections and the signing
    key are reused. Raises D1ConfigurationError when the configuration cannot work.
    """
    config = D1Config.for_issuer(issuer)
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = D1ApiClient(config)
        return client


# An object is a bare operation item when it has one of an item's required fields.
_OPERATION_FIELDS = ("operationId", "cardId", "operation")


def production_status_operations(payload: Any) -> list[dict[str, Any]]:
    """The operation items of a productionStatus answer, whichever of D1's shapes it has.

    `{"operations": [...]}`, one operation object, or a list of operation objects. Raises
    ValueError naming what is wrong with any other shape (an empty list is an answer).
    """
    if isinstance(payload, dict) and "operations" in payload:
        operations = payload["operations"]
        if not isinstance(operations, list):
            raise ValueError('"operations" is not a list')
    elif isinstance(payload, dict):
        if not any(name in payload for name in _OPERATION_FIELDS):
            raise ValueError('an object that is neither an operation nor {"operations": [...]}')
        operations = [payload]
    elif isinstance(payload, list):
        operations = payload
    else:
        raise ValueError(f"a JSON {type(payload).__name__}, not an object or a list")
    if not all(isinstance(operation, dict) for operation in operations):
        raise ValueError("an operation that is not an object")
    return operations


def correlation_id_check(correlation_id: str | None) -> str:
    """The given x-correlation-id if D1 accepts it, else a new random one (never personal data)."""
    if correlation_id is None:
        return uuid.uuid4().hex
    if not CORRELATION_ID_PATTERN.match(correlation_id):
        raise ValueError("x-correlation-id must match ^[A-Za-z0-9_-]{1,64}$")
    return correlation_id


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _token_usable(entry: Any, *, refused: str | None) -> str | None:
    """The cached token unless it is missing, due for refresh, or the one D1 just refused."""
    if not isinstance(entry, dict) or time.time() >= entry.get("refresh_at", 0):
        return None
    token = entry.get("token")
    return token if token and token != refused else None


def _ids_text(log_ids: dict[str, str]) -> str:
    return " ".join(f"{name}={value}" for name, value in log_ids.items())


def _error_code(response: requests.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    code = payload.get("errorCode") if isinstance(payload, dict) else None
    # Kept only when it looks like a code: D1's errorCode is short; anything else is a body.
    return str(code) if code and ERROR_CODE_PATTERN.match(str(code)) else None


def _error_from(
    response: requests.Response,
    message: str,
    *,
    error_class: type[D1Error] = D1Error,
    keep_body: bool = True,
) -> D1Error:
    status = response.status_code
    return error_class(
        message,
        status=status,
        body=response.text[:BODY_SCAN_CHARS] if keep_body else "",
        retryable=status == 429 or status >= 500,
        error_code=_error_code(response),
    )
