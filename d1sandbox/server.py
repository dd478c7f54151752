"""D1's token endpoint and productionStatus API on D1's own paths, plus control endpoints for tests.

Routes (see d1sandbox/README.md for the bodies):

- POST /authz/v1/oauth2/token                           JWT-bearer grant, ES256 assertion
- GET  /banking/v1/issuers/{issuerId}/physicalCards/{cardId}/productionStatus
- GET  /_sandbox/health, GET /_sandbox/stats, GET|POST /_sandbox/faults,
  GET|POST /_sandbox/answer-shapes, POST /_sandbox/revoke-tokens, POST /_sandbox/reset
"""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import ssl
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from d1sandbox.state import StateStore

logger = logging.getLogger("d1sandbox.serve")

JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_SCOPE = "d1-api:account:full d1-api:consumer:read"
# SPEC §5.1: the assertion's exp may be at most 15 minutes ahead; allow a little clock skew.
MAX_ASSERTION_LIFETIME_SECONDS = 15 * 60
CLOCK_SKEW_SECONDS = 30
ISSUER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{10}$")
CARD_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
CORRELATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PRODUCTION_STATUS_PATH = re.compile(
    r"^/banking/v1/issuers/(?P<issuer_id>[^/]+)/physicalCards/(?P<card_id>[^/]+)/productionStatus$"
)
TOKEN_PATH = "/authz/v1/oauth2/token"
MAX_BODY_BYTES = 64 * 1024
# How productionStatus wraps its item, per issuer. D1 only says the answer "uses the same
# operations object" (SPEC §4, §9 #10): the webhook's wrapper, the bare item, or a list of items.
ANSWER_SHAPES = ("operations", "bare", "list")


class AssertionRefused(Exception):
    """The token request cannot be granted; carries D1's errorCode convention."""

    def __init__(self, error_code: str, error: str) -> None:
        super().__init__(error)
        self.error_code = error_code
        self.error = error


def assertion_verify(
    *,
    assertion: str,
    public_keys: dict[str, ec.EllipticCurvePublicKey],
    now: float | None = None,
) -> str:
    """Check a JWT-bearer assertion as D1 does and return the issuer id it speaks for.

    Refuses (AssertionRefused) an unreadable token, an algorithm other than ES256, an unknown
    kid, a bad signature, missing iss/sub/exp, iss != sub, an expired token, and an exp more than
    15 minutes (plus skew) ahead.
    """
    now = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise AssertionRefused("PARSING_ERROR", "assertion is not a readable JWT") from exc
    if header.get("alg") != "ES256":
        raise AssertionRefused("CRYPTO_ERROR", "only ES256 assertions are accepted")
    kid = header.get("kid")
    if not kid:
        raise AssertionRefused("FIELD_INVALID_FORMAT", "assertion header has no kid")
    public_key = public_keys.get(str(kid))
    if public_key is None:
        raise AssertionRefused("CRYPTO_ERROR", "no public key is provisioned under this kid")
    try:
        claims = jwt.decode(
            assertion,
            key=public_key,
            algorithms=["ES256"],
            options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AssertionRefused("FIELD_INVALID_VALUE", "assertion has expired") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AssertionRefused("FIELD_INVALID_FORMAT", f"assertion lacks {exc.claim}") from exc
    except jwt.InvalidSignatureError as exc:
        raise AssertionRefused("CRYPTO_ERROR", "assertion signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise AssertionRefused("FIELD_INVALID_VALUE", f"assertion refused: {exc}") from exc
    if claims["iss"] != claims["sub"]:
        raise AssertionRefused("FIELD_INVALID_VALUE", "iss and sub must both be the issuerId")
    if not isinstance(claims["exp"], int | float):
        raise AssertionRefused("FIELD_INVALID_FORMAT", "exp must be epoch seconds")
    if claims["exp"] > now + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise AssertionRefused("FIELD_INVALID_VALUE", "exp is more than 15 minutes ahead")
    return str(claims["iss"])


@dataclass
class FaultSettings:
    """Faults injected into productionStatus answers; /_sandbox/faults changes them live."""

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    status_5xx: int = 503
    retry_after: int = 1
    latency_ms: int = 0
    # Statuses to answer to the next productionStatus requests, one each, before anything else.
    script: list[int] = field(default_factory=list)


@dataclass
class _IssuedToken:
    issuer_id: str
    expires_at: float


class SandboxService:
    """The in-memory side of the server: keys, issued tokens, faults and counters."""

    def __init__(
        self,
        *,
        public_keys: dict[str, ec.EllipticCurvePublicKey],
        store: StateStore,
        token_ttl: int,
        faults: FaultSettings,
        answer_shapes: dict[str, str] | None = None,
    ) -> None:
        self.public_keys = public_keys
        self.initial_answer_shapes = dict(answer_shapes or {})
        self.answer_shapes = dict(self.initial_answer_shapes)
        self.store = store
        self.token_ttl = token_ttl
        self.initial_faults = replace(faults, script=list(faults.script))
        self.faults = faults
        self._script: deque[int] = deque(faults.script)
        self._lock = threading.Lock()
        self._tokens: dict[str, _IssuedToken] = {}
        self._random = random.Random()
        self.token_requests: Counter[str] = Counter()
        self.status_requests: Counter[str] = Counter()
        self.tls_refused = 0

    def token_issue(self, *, issuer_id: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = _IssuedToken(issuer_id, time.time() + self.token_ttl)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "scope": TOKEN_SCOPE,
        }

    def token_issuer(self, *, token: str) -> str | None:
        """The issuer a live token belongs to; None for an unknown, expired or revoked token."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return None
            if issued.expires_at <= time.time():
                del self._tokens[token]
                return None
            return issued.issuer_id

    def tokens_revoke(self) -> int:
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count

    def fault_draw(self) -> int | None:
        """The status to inject for this productionStatus request, if any."""
        with self._lock:
            if self._script:
                return self._script.popleft()
            draw = self._random.random()
            if draw < self.faults.rate_429:
                return 429
            if draw < self.faults.rate_429 + self.faults.rate_5xx:
                return self.faults.status_5xx
        return None

    def faults_update(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for name in ("rate_429", "rate_5xx"):
                if name in changes:
                    setattr(self.faults, name, float(changes[name]))
            for name in ("status_5xx", "retry_after", "latency_ms"):
                if name in changes:
                    setattr(self.faults, name, int(changes[name]))
            if "script" in changes:
                self._script = deque(int(status) for status in changes["script"])
            return self._faults_view()

    def faults_view(self) -> dict[str, Any]:
        with self._lock:
            return self._faults_view()

    def _faults_view(self) -> dict[str, Any]:
        view = asdict(self.faults)
        view["script"] = list(self._script)
        return view

    def answer_body(self, *, issuer_id: str, item: dict[str, Any]) -> Any:
        """productionStatus's body for `item` in the shape this issuer's D1 answers with."""
        shape = self.answer_shapes.get(issuer_id, "operations")
        if shape == "bare":
            return item
        if shape == "list":
            return [item]
        return {"operations": [item]}

    def answer_shapes_update(self, changes: dict[str, Any]) -> dict[str, str]:
        """Set the answer shape of some issuers ("operations" forgets the issuer's setting)."""
        for issuer_id, shape in changes.items():
            if shape not in ANSWER_SHAPES:
                raise ValueError(f"shape must be one of {', '.join(ANSWER_SHAPES)}")
            if not ISSUER_ID_PATTERN.match(str(issuer_id)):
                raise ValueError(f"{issuer_id!r} is not a 10-character issuerId")
        with self._lock:
            for issuer_id, shape in changes.items():
                if shape == "operations":
                    self.answer_shapes.pop(issuer_id, None)
                else:
                    self.answer_shapes[issuer_id] = shape
            return dict(self.answer_shapes)

    def reset(self) -> None:
        with self._lock:
            self.answer_shapes = dict(self.initial_answer_shapes)
            self._tokens.clear()
            self.token_requests.clear()
            self.status_requests.clear()
            self.tls_refused = 0
            self.faults = replace(self.initial_faults, script=list(self.initial_faults.script))
            self._script = deque(self.faults.script)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            live = sum(1 for token in self._tokens.values() if token.expires_at > time.time())
            return {
                "token_requests": {
                    "total": sum(self.token_requests.values()),
                    **self.token_requests,
                },
                "status_requests": {
                    "total": sum(self.status_requests.values()),
                    **self.status_requests,
                },
                "tokens_live": live,
                "tls_refused": self.tls_refused,
            }

    def count(self, counter: Counter[str], outcome: str) -> None:
        with self._lock:
            counter[outcome] += 1


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Routes one request; every answer is JSON with an explicit Content-Length (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "D1Sandbox/1.0"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (about 40 ms per kept-alive request).
    disable_nagle_algorithm = True
    timeout = 30
    server: SandboxHTTPServer

    @property
    def service(self) -> SandboxService:
        return self.server.service

    # ------------------------------------------------------------------ dispatch
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self._body()
        match = PRODUCTION_STATUS_PATH.match(path)
        if match:
            self._production_status(match["issuer_id"], match["card_id"])
        elif path == "/_sandbox/health":
            self._answer(200, {"status": "ok"})
        elif path == "/_sandbox/stats":
            self._answer(200, self.service.stats())
        elif path == "/_sandbox/faults":
            self._answer(200, self.service.faults_view())
        elif path == "/_sandbox/answer-shapes":
            self._answer(200, dict(self.service.answer_shapes))
        else:
            self._answer(404, {"errorCode": "RESOURCE_NOT_FOUND", "error": "no such path"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if body is None:
            self._answer(413, {"errorCode": "PAYLOAD_TOO_LARGE", "error": "body too large"})
        elif path == TOKEN_PATH:
            self._token(body)
        elif path == "/_sandbox/faults":
            try:
                changes = json.loads(body or b"{}")
                self._answer(200, self.service.faults_update(changes))
            except (ValueError, TypeError) as exc:
                self._answer(400, {"errorCode": "PARSING_ERROR", "error": str(exc)})
        elif path == "/_sandbox/answer-shapes":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("a JSON object {issuerId: shape} is expected")
                self._answer(200, self.service.answer_shapes_update(changes))
            except (ValueError, TypeError) as exc:
                self._answer(400, {"errorCode": "FIELD_INVALID_VALUE", "error": str(exc)})
        elif path == "/_sandbox/revoke-tokens":
            self._answer(200, {"revoked": self.service.tokens_revoke()})
        elif path == "/_sandbox/reset":
            self.service.reset()
            self._answer(200, {"reset": True})
        else:
            self._answer(404, {"errorCode": "RESOURCE_NOT_FOUND", "error": "no such path"})

    # ------------------------------------------------------------------ D1 endpoints
    def _token(self, body: bytes) -> None:
        service = self.service
        fields = _token_request_fields(body=body, content_type=self.headers.get("Content-Type", ""))
        if fields is None:
            service.count(service.token_requests, "refused")
            self._answer(400, {"errorCode": "PARSING_ERROR", "error": "unreadable body"})
            return
        if fields.get("grant_type") != JWT_BEARER_GRANT_TYPE:
            service.count(service.token_requests, "refused")
            self._answer(
                400, {"errorCode": "FIELD_INVALID_VALUE", "error": "unsupported grant_type"}
            )
            return
        assertion = fields.get("assertion")
        if not assertion:
            service.count(service.token_requests, "refused")
            self._answer(400, {"errorCode": "FIELD_INVALID_FORMAT", "error": "assertion missing"})
            return
        try:
            issuer_id = assertion_verify(assertion=assertion, public_keys=service.public_keys)
        except AssertionRefused as refused:
            service.count(service.token_requests, "refused")
            self._log_outcome(400, f"token refused: {refused.error_code}")
            self._answer(400, {"errorCode": refused.error_code, "error": refused.error})
            return
        service.count(service.token_requests, "issued")
        self._log_outcome(200, f"token issued issuer={issuer_id}")
        self._answer(200, service.token_issue(issuer_id=issuer_id))

    def _production_status(self, issuer_id: str, card_id: str) -> None:
        service = self.service
        latency_ms = service.faults.latency_ms
        if latency_ms > 0:
            time.sleep(latency_ms / 1000)

        injected = service.fault_draw()
        if injected == 429:
            self._status_answer(
                429,
                "injected_429",
                {"errorCode": "TOO_MANY_REQUESTS", "error": "rate limit (injected)"},
                headers={"Retry-After": str(service.faults.retry_after)},
            )
            return
        if injected == 401:
            self._status_answer(401, "unauthorized", _unauthorized("token refused (injected)"))
            return
        if injected is not None:
            self._status_answer(
                injected,
                f"injected_{injected}",
                {"errorCode": "INTERNAL_ERROR", "error": "server error (injected)"},
            )
            return

        authorization = self.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        token_issuer = (
            service.token_issuer(token=token.strip()) if scheme.lower() == "bearer" else None
        )
        if token_issuer is None:
            self._status_answer(401, "unauthorized", _unauthorized("missing or invalid token"))
            return
        if token_issuer != issuer_id:
            self._status_answer(
                403,
                "forbidden",
                {"errorCode": "FORBIDDEN", "error": "token was issued to another issuer"},
            )
            return
        if not ISSUER_ID_PATTERN.match(issuer_id) or not CARD_ID_PATTERN.match(card_id):
            self._status_answer(
                400, "bad_request", {"errorCode": "FIELD_INVALID_FORMAT", "error": "bad id"}
            )
            return
        item = service.store.production_status(issuer_id=issuer_id, card_id=card_id)
        if item is None:
            self._status_answer(
                404, "not_found", {"errorCode": "CARD_NOT_FOUND", "error": "unknown card"}
            )
            return
        self._status_answer(200, "ok", service.answer_body(issuer_id=issuer_id, item=item))

    def _status_answer(
        self,
        status: int,
        outcome: str,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.service.count(self.service.status_requests, outcome)
        self._log_outcome(status, outcome)
        self._answer(status, payload, headers=headers)

    # ------------------------------------------------------------------ plumbing
    def _body(self) -> bytes | None:
        """Read the whole body (keep-alive needs it consumed); None when over the size cap."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _log_outcome(self, status: int, outcome: str) -> None:
        correlation_id = self.headers.get("x-correlation-id", "")
        if correlation_id and not CORRELATION_ID_PATTERN.match(correlation_id):
            correlation_id = "<invalid>"
        logger.info(
            "%s %s -> %d %s correlation=%s",
            self.command,
            urlsplit(self.path).path,
            status,
            outcome,
            correlation_id or "-",
        )

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are logged once, with their outcome, by _log_outcome.
        return


def _unauthorized(error: str) -> dict[str, str]:
    return {"errorCode": "AUTHORIZER_UNAUTHORIZED", "error": error}


def _token_request_fields(*, body: bytes, content_type: str) -> dict[str, str] | None:
    """The token request as a flat dict, from a form body or (also accepted by D1) JSON."""
    try:
        if "json" in content_type.lower():
            parsed = json.loads(body or b"{}")
            if not isinstance(parsed, dict):
                return None
            return {str(k): str(v) for k, v in parsed.items()}
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        return {name: values[0] for name, values in form.items()}
    except (ValueError, UnicodeDecodeError):
        return None


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threaded server; with a TLS context the handshake runs in the request's own thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        service: SandboxService,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, SandboxRequestHandler)
        self.service = service
        self.tls_context = tls_context
        if tls_context is not None:
            # No handshake in accept(): one slow or failing client must not stall the others.
            self.socket = tls_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def scheme(self) -> str:
        return "https" if self.tls_context is not None else "http"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(SandboxRequestHandler.timeout)
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                with self.service._lock:
                    self.service.tls_refused += 1
                logger.info("TLS handshake refused from %s: %s", client_address[0], exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.info("connection from %s ended abruptly", client_address[0], exc_info=False)


def tls_context_build(
    *, cert_path: Path, key_path: Path, client_ca_path: Path | None
) -> ssl.SSLContext:
    """Server TLS; with a client CA every client must present a certificate it signed (mTLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
    if client_ca_path is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca_path))
    return context
