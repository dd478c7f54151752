"""Posts the planner's batches to the portal's webhook over real HTTP, retrying as D1 would.

With `register`, each order is first registered through the portal's `POST /api/v1/orders/`,
as the issuer that placed it would, before D1 says anything about it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from d1sandbox.feed_options import FeedOptions
from d1sandbox.lifecycle import OrderRates
from d1sandbox.planner import (
    DeliveryPlanner,
    DeliveryRates,
    Happened,
    OrderPlaced,
    SimulatedClock,
    WallClock,
)
from d1sandbox.portal_calls import (
    FeedSummary,
    OrderRegistrar,
    PortalPoster,
    PortalTokenSource,
    Tally,
)
from d1sandbox.state import ItemKey, StateStore

logger = logging.getLogger("d1sandbox.feed")

# Happenings are written to the state store at least this often when no batch goes out.
HAPPENINGS_FLUSH_SIZE = 500


def default_epoch(*, register: bool = False) -> datetime:
    """Yesterday 00:00 UTC: stable for a day, so a repeated run gives the same timestamps.

    With registration, now (to the second): the issuer registers an order when it places it,
    so D1's times about the order must not come before the registration (the portal orders a
    card's operations by them, a registered one by when it was registered).
    """
    now = datetime.now(UTC)
    if register:
        return now.replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1)


def feed_run(*, options: FeedOptions, out: Callable[[str], Any] = print) -> FeedSummary:
    """Drive the orders, post them to the portal, record the truth; returns the run's summary.

    Writes runs/orders/items rows to the state store. Stops after the last order in finite mode;
    in continuous mode it runs until KeyboardInterrupt and still writes the summary.
    """
    store = StateStore(options.state_path)
    secrets = ("client_secret", "register_token")
    recorded_options = {k: str(v) for k, v in asdict(options).items() if k not in secrets}
    run_id, run_number = store.run_start(
        seed=options.seed, run_number=options.run_number, options=recorded_options
    )
    epoch = options.epoch or default_epoch(register=options.register)
    clock: Any
    if options.continuous:
        clock = WallClock()
    else:
        clock = SimulatedClock(epoch=epoch, rng=random.Random(f"d1sandbox:{options.seed}:clock"))
    planner = DeliveryPlanner(
        issuer_ids=options.issuer_ids,
        orders=options.orders,
        seed=options.seed,
        run_number=run_number,
        order_rates=OrderRates(
            exception_rate=options.exception_rate,
            cancel_rate=options.cancel_rate,
            unknown_rate=options.unknown_rate,
            standalone_rate=options.standalone_rate,
            failed_step_rate=options.failed_step_rate,
            no_details_rate=options.no_details_rate,
            hold_completion_rate=options.hold_completion_rate,
            reattempt_rate=options.reattempt_rate,
            prod_exception_rate=options.prod_exception_rate,
            no_shipment_rate=options.no_shipment_rate,
            update_order_rate=options.update_order_rate,
            reissue_rate=options.reissue_rate,
            silent_rate=options.silent_rate,
            carrier_exception_rate=options.carrier_exception_rate,
            returned_rate=options.returned_rate,
            expired_rate=options.expired_rate,
            novel_word_rate=options.novel_word_rate,
            changed_copy_rate=options.changed_copy_rate,
            japan_carrier_rate=options.japan_carrier_rate,
            offset_time_rate=options.offset_time_rate,
            zoneless_time_rate=options.zoneless_time_rate,
            numeric_id_rate=options.numeric_id_rate,
        ),
        delivery=DeliveryRates(
            duplicate=options.duplicate,
            reorder=options.reorder,
            drop=options.drop,
            batch_max=options.batch_max,
            late_copy=options.late_copy,
            pair=options.pair,
        ),
        clock=clock,
        continuous=options.continuous,
        in_flight=options.in_flight,
        time_scale=options.time_scale,
        no_shipment_issuers=frozenset(options.no_shipment_issuers),
    )
    tally = Tally()
    stopping = threading.Event()
    token_source = None
    if options.client_id and options.client_secret:
        token_source = PortalTokenSource(
            token_url=options.portal_token_url(),
            client_id=options.client_id,
            client_secret=options.client_secret,
            timeout=options.timeout,
            on_request=lambda: tally.add(token_requests=1),
        )
    poster = PortalPoster(
        options=options, store=store, tally=tally, token_source=token_source, stopping=stopping
    )
    registrar = OrderRegistrar(options=options, tally=tally) if options.register else None
    out(f"d1sandbox feed: seed {options.seed}, run {run_number}, state {options.state_path}")

    concurrency = max(1, options.concurrency)
    # Bounds how far planning runs ahead of sending, so the truth is written just before delivery.
    slots = threading.BoundedSemaphore(concurrency * 2)
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="d1sandbox-feed")
    pacer = _Pacer(rate=options.rate)
    happenings: list[tuple[ItemKey, dict, bool, datetime | None]] = []
    futures: set[Future[None]] = set()

    def release(future: Future[None]) -> None:
        slots.release()
        futures.discard(future)
        if future.exception() is not None:
            logger.error("sending a batch failed: %r", future.exception())

    try:
        for event in planner.events():
            if isinstance(event, OrderPlaced):
                store.order_record(
                    run_id=run_id,
                    issuer_id=event.issuer_id,
                    card_id=event.card_id,
                    operation_id=event.operation_id,
                    operation=event.operation,
                    silent=event.silent,
                )
                if registrar is not None and event.registration is not None:
                    # Before D1's first word: nothing of this order has happened yet.
                    outcome, registered = registrar.register(event.registration)
                    store.order_registered(
                        issuer_id=event.issuer_id,
                        card_id=event.card_id,
                        operation_id=event.operation_id,
                        outcome=outcome,
                        registered=registered,
                    )
                continue
            if isinstance(event, Happened):
                happenings.append((event.key, event.item, event.dropped, event.at))
                if len(happenings) >= HAPPENINGS_FLUSH_SIZE:
                    store.items_record(run_id=run_id, happenings=happenings)
                    happenings.clear()
                continue
            if happenings:
                store.items_record(run_id=run_id, happenings=happenings)
                happenings.clear()
            pacer.wait(items=len(event.items), stopping=stopping)
            slots.acquire()
            future = executor.submit(poster.deliver, event)
            futures.add(future)
            future.add_done_callback(release)
    except KeyboardInterrupt:
        out("d1sandbox feed: interrupted, finishing the batches already on their way")
        stopping.set()
    finally:
        if happenings:
            store.items_record(run_id=run_id, happenings=happenings)
        executor.shutdown(wait=True, cancel_futures=stopping.is_set())

    summary = tally.summary
    counters = planner.counters
    summary.seed = options.seed
    summary.run_number = run_number
    summary.epoch = "wall clock" if options.continuous else epoch.isoformat()
    summary.orders = counters.orders
    summary.reissued = counters.reissued
    summary.silent = counters.silent
    summary.generated = counters.generated
    summary.dropped = counters.dropped
    summary.duplicated = counters.duplicated
    summary.reordered = counters.reordered
    summary.late_copies = counters.late_copies
    summary.paired = counters.paired
    store.run_finish(run_id=run_id, summary=asdict(summary))
    store.close()
    for line in summary.lines():
        out(line)
    return summary


class _Pacer:
    """Keeps the notifications on the wire at or below `rate` per second (no limit if None)."""

    def __init__(self, *, rate: float | None) -> None:
        self._rate = rate if rate and rate > 0 else None
        self._next = time.monotonic()

    def wait(self, *, items: int, stopping: threading.Event) -> None:
        if self._rate is None:
            return
        now = time.monotonic()
        if self._next > now:
            stopping.wait(self._next - now)
        self._next = max(self._next, now) + items / self._rate
