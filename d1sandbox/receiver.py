"""An issuer's system receiving the portal's card-order events: verifies, prints, keeps them.

`python -m d1sandbox receiver --secret-file F` listens for Standard Webhooks POSTs, verifies
each signature with the `standardwebhooks` library (never by hand), prints one line per event
and, with `--log`, appends each verified event to a JSON-lines file, marking a `webhook-id`
seen before as a repeat. It answers 204 to a verified event and 400 to anything else, so the
portal retries only what this side never accepted. It does not import the portal.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class EventReceiver:
    """Verified events by webhook-id, the count of repeats, and an optional JSON-lines log."""

    def __init__(self, *, secret: str, log: Path | None = None, echo: bool = True) -> None:
        self.webhook = Webhook(secret)
        self.log = log
        self.echo = echo
        self.seen: dict[str, dict] = {}
        self.repeats = 0
        self.refused = 0
        self._lock = threading.Lock()

    def accept(self, body: bytes, headers: dict[str, str]) -> dict | None:
        """The verified event, or None when the signature or the headers do not verify."""
        try:
            event = self.webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError):
            with self._lock:
                self.refused += 1
            return None
        webhook_id = headers["webhook-id"]
        with self._lock:
            repeat = webhook_id in self.seen
            self.repeats += repeat
            self.seen.setdefault(webhook_id, event)
            if self.log is not None:
                with self.log.open("a") as out:
                    line = {"webhook_id": webhook_id, "repeat": repeat, "event": event}
                    out.write(json.dumps(line, sort_keys=True) + "\n")
        if self.echo:
            self._print(webhook_id, event, repeat=repeat)
        return event

    def _print(self, webhook_id: str, event: dict, *, repeat: bool) -> None:
        order = (event.get("data") or {}).get("order") or {}
        print(
            f"{'repeat ' if repeat else ''}{webhook_id} {event.get('type')} "
            f"seq={(event.get('data') or {}).get('sequence')} card={order.get('card_id')} "
            f"step={order.get('production_status') or '-'} "
            f"carrier={(order.get('shipment') or {}).get('status') or '-'}",
            flush=True,
        )


def receiver_server(receiver: EventReceiver, *, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            accepted = receiver.accept(body, headers) is not None
            self.send_response(204 if accepted else 400)
            self.end_headers()

        def log_message(self, format: str, *args) -> None:
            logger.debug(format, *args)

    return ThreadingHTTPServer((host, port), Handler)


def receiver_serve(*, secret: str, host: str, port: int, log: Path | None) -> int:
    receiver = EventReceiver(secret=secret, log=log)
    server = receiver_server(receiver, host=host, port=port)
    print(f"event receiver on http://{host}:{server.server_address[1]}/events", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(
            f"received {len(receiver.seen)} events, {receiver.repeats} repeats, "
            f"{receiver.refused} refused",
            flush=True,
        )
    return 0
