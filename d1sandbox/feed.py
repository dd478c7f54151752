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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests

from d1sandbox.lifecycle import OrderRates
from d1sandbox.planner import (
    DeliveryPlanner,
    DeliveryRates,
    Happened,
    OrderPlaced,
    Post,
    SimulatedClock,
    WallClock,
)
from d1sandbox.state import DEFAULT_STATE_PATH, ItemKey, StateStore

logger = logging.getLogger("d1sandbox.feed")

PORTAL_TOKEN_GRANT_TYPE = "client_credentials"
# Statuses D1 retries; anything else that is not 2xx is "refused" and never sent again.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_CAP_SECONDS = 60.0
# Renew the portal's bearer token this long before it runs out (or at half its life if shorter).
TOKEN_RENEW_MARGIN_SECONDS = 30.0
# Happenings are written to the state store at least this often when no batch goes out.
HAPPENINGS_FLUSH_SIZE = 500
REGISTRATION_PATH = "/api/v1/orders/"
# Registration refusals logged one by one; after that only counted.
REFUSALS_LOGGED = 5


@dataclass(frozen=True)
class FeedOptions:
    """Everything `python -m d1sandbox feed` takes; the CLI flags map one to one."""

    portal_url: str
    issuer_ids: list[str]
    orders: int = 100
    seed: int = 1
    run_number: int | None = None
    duplicate: float = 0.05
    reorder: float = 0.05
    drop: float = 0.02
    batch_max: int = 5
    exception_rate: float = 0.05
    cancel_rate: float = 0.03
    unknown_rate: float = 0.05
    standalone_rate: float = 0.05
    failed_step_rate: float = 0.03
    no_details_rate: float = 0.02
    hold_completion_rate: float = 0.03
    reattempt_rate: float = 0.05
    prod_exception_rate: float = 0.02
    no_shipment_rate: float = 0.02
    update_order_rate: float = 0.05
    reissue_rate: float = 0.03
    silent_rate: float = 0.0
    late_copy: float = 0.05
    carrier_exception_rate: float = 0.03
    returned_rate: float = 0.02
    expired_rate: float = 0.01
    novel_word_rate: float = 0.05
    changed_copy_rate: float = 0.05
    japan_carrier_rate: float = 0.1
    offset_time_rate: float = 0.1
    zoneless_time_rate: float = 0.05
    numeric_id_rate: float = 0.2
    pair: float = 0.05
    no_shipment_issuers: list[str] = field(default_factory=list)
    time_scale: float = 1.0
    register: bool = False
    register_token: str | None = None
    concurrency: int = 1
    rate: float | None = None
    continuous: bool = False
    in_flight: int = 50
    epoch: datetime | None = None
    state_path: Path = DEFAULT_STATE_PATH
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = None
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    timeout: float = 10.0

    def webhook_url(self, issuer_id: str) -> str:
        return f"{self.portal_url.rstrip('/')}/notifications/d1/v2/issuers/{issuer_id}/cards"

    def registration_url(self) -> str:
        return f"{self.portal_url.rstrip('/')}{REGISTRATION_PATH}"

    def portal_token_url(self) -> str:
        return self.token_url or f"{self.portal_url.rstrip('/')}/authz/d1/v1/oauth2/token"


@dataclass
class FeedSummary:
    """What one feed run did; printed at the end and kept in the state store's `runs` row."""

    seed: int = 0
    run_number: int = 0
    epoch: str = ""
    orders: int = 0
    reissued: int = 0
    silent: int = 0
    generated: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    late_copies: int = 0
    paired: int = 0
    registered_new: int = 0
    registered_existing: int = 0
    registration_refused: int = 0
    registration_failed: int = 0
    posts: int = 0
    attempts: int = 0
    retried: int = 0
    sent: int = 0
    delivered: int = 0
    refused_posts: int = 0
    refused_items: int = 0
    failed_posts: int = 0
    failed_items: int = 0
    token_requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"seed {self.seed}, run {self.run_number}, epoch {self.epoch}",
            f"orders:                  {self.orders} (+{self.reissued} re-orders of a card)",
            f"silent orders:           {self.silent} (every notification dropped)",
            f"registered:              {self.registered_new} new, {self.registered_existing} "
            f"already there, {self.registration_refused} refused, "
            f"{self.registration_failed} gave up",
            f"notifications generated: {self.generated}",
            f"notifications sent:      {self.sent} (distinct delivered: {self.delivered})",
            f"duplicated:              {self.duplicated}",
            f"late copies:             {self.late_copies}",
            f"paired in one POST:      {self.paired}",
            f"reordered:               {self.reordered}",
            f"dropped:                 {self.dropped}",
            f"retried:                 {self.retried}",
            f"refused:                 {self.refused_items} items in {self.refused_posts} POSTs",
            f"gave up:                 {self.failed_items} items in {self.failed_posts} POSTs",
            f"POSTs:                   {self.posts} ({self.attempts} attempts)",
            f"portal token requests:   {self.token_requests}",
            "answers: " + ", ".join(f"{k}={v}" for k, v in sorted(self.statuses.items())),
        ]


class PortalTokenError(Exception):
    """The portal's token endpoint did not hand out a token."""


class PortalTokenSource:
    """The bearer token D1 gets from the portal (client_credentials, HTTP Basic, form body)."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        on_request: Callable[[], None],
    ) -> None:
        self._token_url = token_url
        self._auth = (client_id, client_secret)
        self._timeout = timeout
        self._on_request = on_request
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._token: str | None = None
        self._renew_at = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, *, token: str) -> None:
        """Forget `token` after a 401, unless another thread already replaced it."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> None:
        self._on_request()
        try:
            response = self._session.post(
                self._token_url,
                data={"grant_type": PORTAL_TOKEN_GRANT_TYPE},
                auth=self._auth,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise PortalTokenError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise PortalTokenError(f"token endpoint answered {response.status_code}")
        try:
            payload = response.json()
            token = str(payload["access_token"])
            # The outbound OAuth spec gives expires_in as a string ("900"); accept numbers too.
            lifetime = float(payload.get("expires_in") or 300)
        except (ValueError, KeyError, TypeError) as exc:
            raise PortalTokenError("token endpoint answered an unreadable body") from exc
        margin = min(TOKEN_RENEW_MARGIN_SECONDS, lifetime / 2)
        self._token = token
        self._renew_at = time.monotonic() + lifetime - margin


class _Tally:
    """Counters shared by the sending threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.summary = FeedSummary()
        self._delivered_keys: set[ItemKey] = set()

    def add(self, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                setattr(self.summary, name, getattr(self.summary, name) + amount)

    def status_seen(self, status: str) -> None:
        with self._lock:
            self.summary.statuses[status] = self.summary.statuses.get(status, 0) + 1

    def delivered(self, keys: list[ItemKey]) -> None:
        with self._lock:
            self._delivered_keys.update(keys)
            self.summary.delivered = len(self._delivered_keys)


class OrderRegistrar:
    """Registers orders through the portal's registration API, as the issuer that placed them.

    201 (new) and 200 (already there) count as registered; 5xx, 429 and connection errors are
    retried with backoff up to `max_retries`; any other answer is a refusal.
    """

    def __init__(self, *, options: FeedOptions, tally: _Tally) -> None:
        self._options = options
        self._tally = tally
        self._session = requests.Session()
        self._jitter = random.Random()
        self._refusals_logged = 0

    def register(self, body: dict[str, str]) -> tuple[str, bool]:
        """Register one order; returns (outcome, registered)."""
        options = self._options
        headers = {
            "Authorization": f"Token {options.register_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self._session.post(
                    options.registration_url(), json=body, headers=headers, timeout=options.timeout
                )
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                retryable = True
            else:
                outcome = str(response.status_code)
                if response.status_code in (200, 201):
                    field_name = (
                        "registered_new" if response.status_code == 201 else ("registered_existing")
                    )
                    self._tally.add(**{field_name: 1})
                    return outcome, True
                retryable = response.status_code in RETRYABLE_STATUSES
                if response.status_code == 429:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                if not retryable:
                    self._refused(body=body, status=response.status_code, text=response.text)
                    return outcome, False
            if attempt > options.max_retries:
                self._tally.add(registration_failed=1)
                logger.warning("registering %s gave up: %s", body.get("card_id"), outcome)
                return outcome, False
            ceiling = min(options.backoff_cap, options.backoff_base * 2 ** (attempt - 1))
            time.sleep(
                min(retry_after, RETRY_AFTER_CAP_SECONDS)
                if retry_after is not None
                else ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
            )

    def _refused(self, *, body: dict[str, str], status: int, text: str) -> None:
        self._tally.add(registration_refused=1)
        if self._refusals_logged < REFUSALS_LOGGED:
            self._refusals_logged += 1
            logger.warning(
                "registration of %s refused: %d %s", body.get("card_id"), status, text[:200]
            )


class PortalPoster:
    """Sends one planned POST with D1-like retries; records what the portal acknowledged."""

    def __init__(
        self,
        *,
        options: FeedOptions,
        store: StateStore,
        tally: _Tally,
        token_source: PortalTokenSource | None,
        stopping: threading.Event,
    ) -> None:
        self._options = options
        self._store = store
        self._tally = tally
        self._token_source = token_source
        self._stopping = stopping
        self._sessions = threading.local()
        self._jitter = random.Random()

    def deliver(self, post: Post) -> None:
        options = self._options
        body = post.body()
        url = options.webhook_url(post.issuer_id)
        self._tally.add(posts=1)
        attempt = 0
        while True:
            attempt += 1
            self._tally.add(attempts=1)
            retry_after: float | None = None
            token: str | None = None
            headers = {
                "Content-Type": "application/json",
                "x-correlation-id": post.correlation_id,
            }
            try:
                if self._token_source is not None:
                    token = self._token_source.token()
                    headers["Authorization"] = f"Bearer {token}"
                response = self._session().post(
                    url, data=body, headers=headers, timeout=options.timeout
                )
            except (requests.RequestException, PortalTokenError) as exc:
                outcome = type(exc).__name__
                retryable = True
            else:
                status = response.status_code
                outcome = str(status)
                response.close()
                if 200 <= status < 300:
                    self._tally.status_seen(outcome)
                    self._acknowledged(post)
                    return
                if status == 401 and self._token_source is not None and token is not None:
                    self._token_source.invalidate(token=token)
                    retryable = True
                else:
                    retryable = status in RETRYABLE_STATUSES
                if status == 429:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            self._tally.status_seen(outcome)
            logger.info(
                "POST %s correlation=%s items=%d attempt=%d answer=%s",
                post.issuer_id,
                post.correlation_id,
                len(post.items),
                attempt,
                outcome,
            )
            if not retryable:
                self._tally.add(refused_posts=1, refused_items=len(post.items))
                return
            if attempt > options.max_retries or self._stopping.is_set():
                self._tally.add(failed_posts=1, failed_items=len(post.items))
                return
            self._tally.add(retried=1)
            delay = self._backoff(attempt=attempt, retry_after=retry_after)
            if self._stopping.wait(delay):
                self._tally.add(failed_posts=1, failed_items=len(post.items))
                return

    def _acknowledged(self, post: Post) -> None:
        keys = [planned.key for planned in post.items]
        self._store.items_mark_delivered(keys=keys)
        self._tally.add(sent=len(keys))
        self._tally.delivered(keys)

    def _backoff(self, *, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP_SECONDS)
        ceiling = min(self._options.backoff_cap, self._options.backoff_base * 2 ** (attempt - 1))
        # "Equal jitter": at least half the exponential delay, so retries never bunch at zero.
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = requests.Session()
            self._sessions.session = session
        return session


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
    tally = _Tally()
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
