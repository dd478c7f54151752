"""Tiny stdlib HTTP servers that stand in for the portal in sandbox tests."""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class ReceivedPost:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


@dataclass
class PortalBehaviour:
    """What the fake portal answers: a script of statuses first, then `default_status`."""

    script: deque[int] = field(default_factory=deque)
    default_status: int = 204
    retry_after: str = "0"
    client_id: str | None = None  # when set, the webhook demands a bearer from the token endpoint
    client_secret: str | None = None
    token_expires_in: str = "900"
    issued_tokens: list[str] = field(default_factory=list)
    token_requests: int = 0
    revoke_at_post: int | None = None  # the Nth webhook POST finds the current token revoked
    registration_token: str = "register-token"
    registration_script: deque[int] = field(default_factory=deque)


class FakePortal:
    """Records every webhook POST and answers like the portal would (204 by default)."""

    def __init__(self, behaviour: PortalBehaviour | None = None) -> None:
        self.behaviour = behaviour or PortalBehaviour()
        self.posts: list[ReceivedPost] = []
        # Registration calls as (status, body), and every call in arrival order as
        # ("register", card_id) or ("notify", card_id) per item.
        self.registrations: list[tuple[int, dict[str, Any]]] = []
        self.arrivals: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        portal = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if urlsplit(self.path).path == "/authz/d1/v1/oauth2/token":
                    self._token(raw)
                    return
                if urlsplit(self.path).path == "/api/v1/orders/":
                    self._register(raw)
                    return
                status, extra = portal._answer_for(self.headers)
                with portal.lock:
                    if 200 <= status < 300:
                        portal.arrivals.extend(
                            ("notify", item["cardId"]) for item in json.loads(raw)["operations"]
                        )
                    portal.posts.append(
                        ReceivedPost(
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=json.loads(raw),
                            status=status,
                        )
                    )
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _register(self, raw: bytes) -> None:
                """The registration API's contract: 201 new, 200 already there, Token auth."""
                behaviour = portal.behaviour
                body = json.loads(raw)
                with portal.lock:
                    if self.headers.get("Authorization") != (
                        f"Token {behaviour.registration_token}"
                    ):
                        status = 401
                    elif behaviour.registration_script:
                        status = behaviour.registration_script.popleft()
                    elif not body.get("issuer_id") or not body.get("card_id"):
                        status = 400
                    else:
                        key = (body["card_id"], body.get("operation_id"))
                        known = {
                            (b["card_id"], b.get("operation_id"))
                            for s, b in portal.registrations
                            if s in (200, 201)
                        }
                        status = 200 if key in known else 201
                    portal.registrations.append((status, body))
                    if status in (200, 201):
                        portal.arrivals.append(("register", body["card_id"]))
                answer = json.dumps({"card_id": body.get("card_id")}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _token(self, raw: bytes) -> None:
                behaviour = portal.behaviour
                expected = base64.b64encode(
                    f"{behaviour.client_id}:{behaviour.client_secret}".encode()
                ).decode()
                form = parse_qs(raw.decode())
                with portal.lock:
                    behaviour.token_requests += 1
                    good = self.headers.get("Authorization") == f"Basic {expected}" and form.get(
                        "grant_type"
                    ) == ["client_credentials"]
                    token = f"portal-token-{behaviour.token_requests}"
                    if good:
                        behaviour.issued_tokens.append(token)
                if not good:
                    body = b'{"error":"invalid_client"}'
                    self.send_response(401)
                else:
                    body = json.dumps(
                        {
                            "access_token": token,
                            "token_type": "Bearer",
                            "expires_in": behaviour.token_expires_in,
                        }
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _answer_for(self, headers: Any) -> tuple[int, dict[str, str]]:
        behaviour = self.behaviour
        with self.lock:
            if behaviour.revoke_at_post == len(self.posts) + 1:
                behaviour.issued_tokens.append("revoked-marker")
            if behaviour.client_id is not None:
                valid = behaviour.issued_tokens[-1:] if behaviour.issued_tokens else []
                if headers.get("Authorization") not in [f"Bearer {t}" for t in valid]:
                    return 401, {}
            status = behaviour.script.popleft() if behaviour.script else behaviour.default_status
        extra = {"Retry-After": behaviour.retry_after} if status == 429 else {}
        return status, extra

    def acknowledged_items(self) -> list[dict[str, Any]]:
        """Every item copy of every POST answered 2xx, in arrival order."""
        return [
            item
            for post in self.posts
            if 200 <= post.status < 300
            for item in post.body["operations"]
        ]

    def __enter__(self) -> FakePortal:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeReadApi:
    """The portal's read API (`/api/v1/orders/`) over a fixed list of results, cursor-paged."""

    def __init__(self, *, results: list[dict[str, Any]], token: str, page_size: int = 2) -> None:
        self.results = results
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                api.requests.append(self.path)
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if self.headers.get("Authorization") != f"Token {token}":
                    self._json(401, {"detail": "Invalid token."})
                    return
                if parts.path != "/api/v1/orders/":
                    self._json(404, {"detail": "Not found."})
                    return
                issuer_id = query.get("issuer_id", [None])[0]
                rows = [r for r in api.results if issuer_id in (None, r["issuer_id"])]
                start = int(query.get("cursor", ["0"])[0])
                page = rows[start : start + page_size]
                following = start + page_size
                next_url = None
                if following < len(rows):
                    next_url = f"{api.url}/api/v1/orders/?cursor={following}"
                    if issuer_id:
                        next_url += f"&issuer_id={issuer_id}"
                self._json(200, {"next": next_url, "previous": None, "results": page})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeReadApi:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
