"""The demo receiver (`python -m d1sandbox receiver`): every change of a fed run, once per id."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from d1sandbox.receiver import EventReceiver, receiver_server
from tests.domain.test_rules import lifecycle
from tracking.models.outbound import DeliveryStatus, EventDelivery, OutboundEvent
from tracking.outbound.delivery import deliveries_sweep
from tracking.services.audit import Actor
from tracking.services.event_endpoints import endpoint_create

pytestmark = pytest.mark.django_db


def test_the_receiver_gets_every_change_exactly_once_per_webhook_id(
    issuer, post_notification, tmp_path
):
    holder: dict = {}
    server = None

    def start(secret: str):
        nonlocal server
        holder["receiver"] = EventReceiver(secret=secret, log=tmp_path / "events.jsonl")
        server = receiver_server(holder["receiver"], host="127.0.0.1", port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1]

    port = start("whsec_" + "AAAA" * 8)  # a placeholder until the endpoint's secret is known
    endpoint, secret = endpoint_create(
        issuer=issuer, url=f"http://127.0.0.1:{port}/events", actor=Actor.of_command("tests")
    )
    holder["receiver"].webhook = EventReceiver(secret=secret).webhook
    try:
        for card in ("card-r-1", "card-r-2", "card-r-3"):
            items = [{**item, "cardId": card} for item in lifecycle()[:9]]
            for item in [*items, items[0], items[3]]:  # with copies
                assert post_notification({"operations": [item]}).status_code == 204
        deliveries_sweep()
        deliveries_sweep()  # a second sweep sends nothing twice
    finally:
        server.shutdown()
        server.server_close()
    receiver = holder["receiver"]
    events = set(OutboundEvent.objects.values_list("event_id", flat=True))
    assert set(receiver.seen) == events and len(events) >= 3 * 8
    assert (receiver.repeats, receiver.refused) == (0, 0)
    assert not EventDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == len(events)
    assert endpoint.pk


def test_the_receiver_does_not_import_the_portal():
    code = (
        "import sys, d1sandbox.receiver, d1sandbox.cli; "
        "sys.exit(any(m.split('.')[0] in ('tracking', 'django') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
