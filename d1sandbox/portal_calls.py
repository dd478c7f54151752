"""Calling the portal as D1 and as the issuer: D1's bearer token, the webhook POSTs with D1's
retries, the registration API, and the counters of what each call did (`FeedSummary`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import requests

from d1sandbox.planner import Post
from d1sandbox.state import ItemKey, StateStore

if TYPE_CHECKING:
    from d1sandbox.feed_options import FeedOptions

# The feed's logger: what the calls say reads as the feed's own lines.
logger = logging.getLogger("d1sandbox.feed")

PORTAL_TOKEN_GRANT_TYPE = "client_credentials"
# Statuses D1 retries; anything else that is not 2xx is "refused" and never sent again.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_CAP_SECONDS = 60.0
# Renew the portal's bearer token this long before it runs out (or at half its life if shorter).
TOKEN_RENEW_MARGIN_SECONDS = 30.0
# Registration refusals logged one by one; after that only counted.
REFUSALS_LOGGED = 5


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


class Tally:
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

    def __init__(self, *, options: FeedOptions, tally: Tally) -> None:
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
        tally: Tally,
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
