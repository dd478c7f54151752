"""Outbound events: what the outbox costs ingest, and how fast deliveries go to a local receiver.

1. Ingest, in this process (no HTTP), batches of 50 items where every item moves its order a
   step (the outbox's worst case: every item is an event), in turn: without the outbox (its
   call made a no-op, ingest as before it), with the outbox for an issuer without endpoints, and
   for one with an endpoint subscribed to everything; the same run, the same database.
   Deliveries are only written here (EVENT_DELIVERY_ON_COMMIT off), as they are at intake.
2. Sends the owed deliveries to the demo receiver (`d1sandbox.receiver`, verifying each
   signature) in this process: one sender, then four threads (as four worker processes would).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/events_bench.py
    ... --orders 1000 --steps 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY", "CARD_PROD_ONGOING"]


def django_setup(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["DATABASE_URL"] = database_url
    os.environ["EVENT_DELIVERY_ON_COMMIT"] = "false"
    os.environ.setdefault("DJANGO_DEBUG", "false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def item(card: str, step: str) -> dict:
    return {
        "operationId": f"op-{card}",
        "operation": "PRODUCE",
        "status": "PENDING",
        "startTime": "2026-03-02T09:00:00.000Z",
        "cardId": card,
        "details": {"status": step},
    }


def ingest_batch(issuer, items, *, outbox: bool = True) -> float:
    from django.db import transaction

    from tracking.intake.ingest import steps as ingest
    from tracking.models import NotificationDelivery

    # Ingest as it was before the outbox: its one call at each write point made a no-op.
    ingest.events_record = _events_record if outbox else (lambda *args, **kwargs: [])
    started = time.perf_counter()
    with transaction.atomic():
        delivery = NotificationDelivery(issuer=issuer, status_code=204)
        ingest.ingest_operations(issuer=issuer, operations=items, delivery=delivery)
    return time.perf_counter() - started


def _events_record(*args, **kwargs):
    from tracking.outbound.outbox import events_record

    return events_record(*args, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=4, choices=range(1, len(STEPS) + 1))
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", f"sqlite:///{ROOT / '.local' / 'bench.db'}")
    django_setup(database_url)

    from django.db import connection

    from d1sandbox.receiver import EventReceiver, receiver_server
    from tracking.models import Issuer
    from tracking.models.outbound import EventDelivery
    from tracking.outbound.delivery import deliveries_due, delivery_attempt
    from tracking.services.audit import Actor
    from tracking.services.event_endpoints import endpoint_create

    run = str(int(time.time()))[-6:]
    bare = Issuer.objects.create(issuer_id=f"BNOOB{run}"[:10], name="bench without outbox")
    plain = Issuer.objects.create(issuer_id=f"BNOEP{run}"[:10], name="bench without endpoint")
    subscribed = Issuer.objects.create(issuer_id=f"BEP{run}".ljust(10, "0"), name="bench")
    receiver = EventReceiver(secret="whsec_" + "AAAA" * 8, echo=False)
    server = receiver_server(receiver, host="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    _, secret = endpoint_create(
        issuer=subscribed, url=f"http://127.0.0.1:{port}/events", actor=Actor.of_command("bench")
    )
    receiver.webhook = EventReceiver(secret=secret).webhook

    timings: dict[str, list[float]] = {"no outbox": [], "outbox": [], "outbox+endpoint": []}
    cards = [f"bench-{run}-{n:06d}" for n in range(args.orders)]
    for step in STEPS[: args.steps]:
        for start in range(0, len(cards), args.batch):
            chunk = cards[start : start + args.batch]
            items = [item(card, step) for card in chunk]
            timings["no outbox"].append(ingest_batch(bare, items, outbox=False))
            timings["outbox"].append(ingest_batch(plain, items))
            timings["outbox+endpoint"].append(ingest_batch(subscribed, items))
    items_total = len(cards) * args.steps
    print(f"database: {connection.vendor}; {items_total} items per issuer, batches of {args.batch}")
    rates = {}
    for name, values in timings.items():
        rates[name] = items_total / sum(values)
        print(
            f"ingest, {name:15}: {rates[name]:8.0f} items/s "
            f"(batch p50 {statistics.median(values) * 1000:.1f} ms)"
        )
    for name in ("outbox", "outbox+endpoint"):
        print(f"{name} / no outbox: {rates[name] / rates['no outbox']:.2f}")

    owed = EventDelivery.objects.filter(endpoint__issuer=subscribed).count()
    half = deliveries_due(limit=owed)[: owed // 2]
    started = time.perf_counter()
    for delivery_id in half:
        delivery_attempt(delivery_id)
    one = len(half) / (time.perf_counter() - started)
    rest = deliveries_due(limit=owed)

    def send(delivery_id: int) -> None:
        try:
            delivery_attempt(delivery_id)
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, rest))
    four = len(rest) / (time.perf_counter() - started)
    server.shutdown()
    print(f"deliveries owed: {owed}; verified by the receiver: {len(receiver.seen)}")
    print(f"delivery rate: one sender {one:.0f}/s, four threads {four:.0f}/s")
    print(f"repeats {receiver.repeats}, refused {receiver.refused}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
