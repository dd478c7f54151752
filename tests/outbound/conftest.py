"""A real HTTP receiver that verifies signatures with the Standard Webhooks library."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tracking.services.audit import Actor
from tracking.services.event_endpoints import endpoint_create


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: dict | None  # the verified body; None when the signature did not verify
    status: int = 0  # what the receiver answered


@dataclass
class Receiver:
    """An issuer system: answers `answer()` (200 by default) and keeps every request."""

    url: str = ""
    secret: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Callable[[], int] = lambda: 200

    @property
    def verified(self) -> list[Received]:
        return [r for r in self.received if r.event is not None]


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                event = Webhook(receiver.secret).verify(body, headers)
            except WebhookVerificationError:
                event = None
            status = receiver.answer() if event is not None else 400
            receiver.received.append(Received(headers, body, event, status))
            self.send_response(status)
            payload = json.dumps({"ok": status < 300}).encode()
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(found))
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/cards"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture
def endpoint(issuer, receiver):
    made, secret = endpoint_create(issuer=issuer, url=receiver.url, actor=Actor.of_command("tests"))
    receiver.secret = secret
    return made
