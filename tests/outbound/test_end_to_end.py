"""End to end: a fed sandbox run, and an outside receiver that verifies every signature with the
library gets every change exactly once per `webhook-id`.

Separate processes over real HTTP on PostgreSQL and Redis
(tests/services/reconcile/portal.py): gunicorn,
a Celery worker and beat, the D1 sandbox feeding with copies, re-ordering and drops, and
`python -m d1sandbox receiver`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model

from d1sandbox.keys import key_pair_ensure
from tests.conftest import grant_every_issuer
from tests.fixtures.api_tokens import read_api_token
from tests.services.reconcile.portal import (  # noqa: F401 (fixtures)
    portal_environment,
    portal_start,
    processes,
    redis_broker,
)
from tests.services.reconcile.sandbox import ROOT, Sandbox, sandbox_converge, sandbox_feed
from tracking.models import CardOrder, Issuer
from tracking.models.outbound import DeliveryStatus, EventDelivery, OutboundEvent
from tracking.services.roles import OPERATORS, roles_ensure

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "E2EEVENT01"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_fed_run_reaches_the_receiver_once_per_webhook_id(
    tmp_path,
    redis_broker,  # noqa: F811
    processes,  # noqa: F811
):
    issuer = Issuer.objects.create(issuer_id=ISSUER_ID, name="Events Bank")
    staff = get_user_model().objects.create_user("events-reader", is_staff=True)
    staff.groups.add(roles_ensure()[OPERATORS])
    grant_every_issuer(staff)
    token = read_api_token(staff)
    port = _free_port()
    secret_file, log = tmp_path / "secret", tmp_path / "received.jsonl"

    keys = key_pair_ensure(directory=tmp_path / "sandbox" / "keys")
    state_path = tmp_path / "sandbox" / "state.sqlite3"
    sandbox = Sandbox(
        process=processes.sandbox(keys_dir=keys.directory, state_path=state_path),
        keys=keys,
        state_path=state_path,
    )
    env = portal_environment(
        tmp_path=tmp_path,
        sandbox=sandbox,
        broker=redis_broker,
        EVENT_SWEEP_INTERVAL="1",
        EVENT_DELIVERY_BACKOFF_BASE="1",
        EVENT_DELIVERY_BACKOFF_CAP="2",
    )
    # The endpoint as an operator makes it: the portal's command, with the portal's key.
    made = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "create_event_endpoint",
            ISSUER_ID,
            f"http://127.0.0.1:{port}/events",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    secret_file.write_text(made.split("secret=", 1)[1].split()[0])
    processes.start(
        "receiver",
        [
            sys.executable,
            "-m",
            "d1sandbox",
            "receiver",
            "--port",
            str(port),
            "--secret-file",
            str(secret_file),
            "--log",
            str(log),
        ],
        env,
    )
    portal_url = portal_start(processes=processes, env=env, tmp_path=tmp_path)
    sandbox_feed(
        portal_url=portal_url,
        issuer_id=ISSUER_ID,
        orders=30,
        state_path=state_path,
        env=env,
        args=["--seed", "43", "--duplicate", "0.2", "--reorder", "0.2", "--drop", "0.1"],
    )
    sandbox_converge(portal_url=portal_url, token=token, state_path=state_path, seconds=90)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not EventDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists():
            break
        time.sleep(1)
    events = set(OutboundEvent.objects.filter(issuer=issuer).values_list("event_id", flat=True))
    waiting = EventDelivery.objects.exclude(status=DeliveryStatus.DELIVERED)
    assert not waiting.exists(), [
        (d.attempts, d.last_status_code, d.last_error, d.next_attempt_at) for d in waiting[:5]
    ]
    received = [json.loads(line) for line in log.read_text().splitlines()]
    first_time = [r["webhook_id"] for r in received if not r["repeat"]]
    assert sorted(first_time) == sorted(events)  # every change, once per webhook-id
    assert len(events) > 30
    shipped = CardOrder.objects.filter(issuer=issuer, production_status="CARD_SHIPPED").count()
    shipped_events = sum(1 for r in received if r["event"]["type"] == "card_order.shipped")
    assert shipped_events >= shipped
    print(
        f"{len(events)} events for {CardOrder.objects.filter(issuer=issuer).count()} orders; "
        f"received {len(received)} POSTs, {len(received) - len(first_time)} repeats"
    )
