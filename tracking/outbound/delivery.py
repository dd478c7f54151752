"""Sending events: Standard Webhooks signatures, one task per delivery, retries for days.

Each delivery (one event for one endpoint) is its own Celery task, so a slow or failing
endpoint never holds up another's; the order of arrival is therefore not guaranteed, and the
`sequence` in each event lets the receiver keep the latest. A task claims its delivery by moving
`next_attempt_at` forward (a lease), sends once, records the attempt, and either marks it
delivered or sets the next attempt after an exponential back-off with jitter; after
EVENT_DELIVERY_RETRY_FOR (3 days) it gives up. The database is the source of truth: the sweep
(`deliveries_sweep`, Celery beat) queues every delivery that is due, so a lost broker message
only delays one. The `webhook-id` is the event's id, the same on every attempt and replay.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from dataclasses import dataclass

import certifi
import urllib3
from celery import shared_task
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from tracking.models.outbound import (
    DeliveryAttempt,
    DeliveryStatus,
    EventDelivery,
    EventEndpoint,
    OutboundEvent,
)
from tracking.outbound.addresses import AddressRefused, addresses_resolve
from tracking.outbound.secrets import secret_decrypt

logger = logging.getLogger(__name__)

RESPONSE_KEEP_BYTES = 512


def event_body(event: OutboundEvent) -> str:
    """The JSON body of `event`: `{"type", "timestamp", "data"}`, the same on every attempt."""
    return json.dumps(
        {
            "type": event.type,
            "timestamp": event.created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "data": event.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def endpoint_secrets(endpoint: EventEndpoint, *, now: dt.datetime) -> list[str]:
    """The secrets that sign for `endpoint` now: the current one, and the previous one during
    a rotation's overlap."""
    found = [secret_decrypt(endpoint.secret_encrypted)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires and expires > now:
        found.append(secret_decrypt(endpoint.previous_secret_encrypted))
    return found


def signed_headers(
    *, event_id: str, body: str, secrets: list[str], at: dt.datetime
) -> dict[str, str]:
    """The Standard Webhooks headers; one `v1,` signature per secret, space separated."""
    signatures = " ".join(Webhook(s).sign(event_id, at, body) for s in secrets)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": "d1-card-order-portal-events/1",
    }


def retry_delay(attempt: int) -> dt.timedelta:
    """Back-off after the `attempt`th failure: doubling from EVENT_DELIVERY_BACKOFF_BASE up to
    EVENT_DELIVERY_BACKOFF_CAP, each drawn between half and all of it (jitter), so that many
    deliveries failing together do not come back together."""
    base = settings.EVENT_DELIVERY_BACKOFF_BASE.total_seconds()
    cap = settings.EVENT_DELIVERY_BACKOFF_CAP.total_seconds()
    ceiling = min(cap, base * 2 ** min(attempt - 1, 30))
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    latency_ms: int
    start: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_pinned(url: str, *, body: str, headers: dict[str, str]) -> Answer:
    """POST to `url`, connecting to an address checked just now (no redirect followed).

    The name is resolved and every address checked (`addresses_resolve`); the connection goes
    to the first checked address, with the name kept for the Host header and TLS, so a DNS
    answer that changes between the check and the connection cannot reach a refused address.
    """
    from urllib.parse import urlsplit

    started = time.monotonic()
    try:
        host, port, addresses = addresses_resolve(url)
    except AddressRefused as exc:
        return Answer(None, 0, "", str(exc)[:255])
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = urllib3.Timeout(
        connect=settings.EVENT_DELIVERY_CONNECT_TIMEOUT, read=settings.EVENT_DELIVERY_READ_TIMEOUT
    )
    host_header = parts.netloc.rsplit("@", 1)[-1]
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            addresses[0],
            port,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.EVENT_DELIVERY_CA_BUNDLE or certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(addresses[0], port, timeout=timeout, retries=False)
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                path,
                body=body.encode(),
                headers={**headers, "host": host_header},
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
            start = response.read(RESPONSE_KEEP_BYTES)
            response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        latency = int((time.monotonic() - started) * 1000)
        return Answer(None, latency, "", f"{type(exc).__name__}: {exc}"[:255])
    latency = int((time.monotonic() - started) * 1000)
    return Answer(response.status, latency, start.decode("utf-8", "replace"), "")


def delivery_attempt(delivery_id: int, *, now: dt.datetime | None = None) -> str | None:
    """Send one due delivery once; return its status after, or None when it was not due.

    Claims the delivery (a lease of EVENT_DELIVERY_LEASE), so two workers never send it at once;
    writes one DeliveryAttempt; on success marks it delivered and the endpoint healthy; on
    failure sets the next attempt (or gives up after EVENT_DELIVERY_RETRY_FOR) and disables an
    endpoint failing for longer than EVENT_ENDPOINT_DISABLE_AFTER.
    """
    now = now or timezone.now()
    claimed = EventDelivery.objects.filter(
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now,
        endpoint__enabled=True,
    ).update(next_attempt_at=now + settings.EVENT_DELIVERY_LEASE, attempts=F("attempts") + 1)
    if not claimed:
        return None
    delivery = EventDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint, event = delivery.endpoint, delivery.event
    body = event_body(event)
    try:
        secrets = endpoint_secrets(endpoint, now=now)
    except InvalidToken:
        # The key changed under the stored secret (EVENT_SECRET_KEY, DJANGO_SECRET_KEY without
        # the old one in its fallbacks): nothing can be signed; kept, retried, and visible.
        logger.error("event endpoint %s: its secret cannot be decrypted", endpoint.pk)
        answer = Answer(None, 0, "", "The signing secret cannot be decrypted (key changed).")
    else:
        headers = signed_headers(event_id=event.event_id, body=body, secrets=secrets, at=now)
        answer = post_pinned(endpoint.url, body=body, headers=headers)
    finished = now + dt.timedelta(milliseconds=answer.latency_ms)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            started_at=now,
            status_code=answer.status_code,
            latency_ms=answer.latency_ms,
            response_start=answer.start,
            error=answer.error,
        )
        delivery.last_attempt_at = now
        delivery.last_status_code = answer.status_code
        delivery.last_error = answer.error
        if answer.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = finished
            delivery.next_attempt_at = None
            EventEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(
                failing_since=None
            )
        elif now - delivery.created_at >= settings.EVENT_DELIVERY_RETRY_FOR:
            delivery.status = DeliveryStatus.GAVE_UP
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        delivery.save(
            update_fields=[
                "status",
                "last_attempt_at",
                "last_status_code",
                "last_error",
                "delivered_at",
                "next_attempt_at",
            ]
        )
        if not answer.ok:
            _endpoint_failure(endpoint, now=now, answer=answer)
    return delivery.status


def _endpoint_failure(endpoint: EventEndpoint, *, now: dt.datetime, answer: Answer) -> None:
    """Start the endpoint's failing period, or disable it once it has lasted too long."""
    EventEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
        failing_since=now
    )
    since = EventEndpoint.objects.values_list("failing_since", flat=True).get(pk=endpoint.pk)
    if since is not None and now - since > settings.EVENT_ENDPOINT_DISABLE_AFTER:
        reason = f"failing since {since:%Y-%m-%d %H:%M %Z}: " + (
            answer.error or f"HTTP {answer.status_code}"
        )
        disabled = EventEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_at=now, disabled_reason=reason[:255]
        )
        if disabled:
            logger.warning(
                "event endpoint disabled endpoint=%s issuer=%s reason=%s",
                endpoint.pk,
                endpoint.issuer_id,
                reason,
            )


@shared_task(
    name="tracking.deliver_event",
    time_limit=settings.EVENT_DELIVERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.EVENT_DELIVERY_TASK_TIME_LIMIT - 5,
)
def deliver_event_task(delivery_id: int) -> str | None:
    return delivery_attempt(delivery_id)


def deliveries_enqueue(delivery_ids: list[int]) -> None:
    """Queue one task per delivery (after the commit that wrote them)."""
    for delivery_id in delivery_ids:
        try:
            deliver_event_task.delay(delivery_id)
        except Exception:  # the broker may be down: the sweep queues it later
            logger.warning("could not queue event delivery %s", delivery_id, exc_info=True)
            return


def deliveries_due(*, now: dt.datetime | None = None, limit: int = 1000) -> list[int]:
    """The deliveries whose attempt is due, to enabled endpoints, oldest first."""
    now = now or timezone.now()
    return list(
        EventDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def deliveries_sweep(*, now: dt.datetime | None = None) -> int:
    """Queue every due delivery (idempotent: a task finds a claimed one not due)."""
    due = deliveries_due(now=now, limit=settings.EVENT_SWEEP_BATCH)
    deliveries_enqueue(due)
    return len(due)
