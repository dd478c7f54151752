"""Deliveries: how one POST from D1 is recorded and answered, accepted or refused.

The HTTP contract lives here and nowhere else:
- 204 only after the delivery and its items are committed;
- 400 for a body that can never be valid (never retried by D1); kept, capped, for staff;
- 404 for an issuer that is not registered or not active; 413 above the size cap; 415 for a
  content type that is not JSON; 405 for other methods; each kept as a refused delivery;
- 503 for a transient fault (the database is away), so that D1 retries later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, transaction

from tracking.data_care import pan_mask_text
from tracking.models import EventSource, Issuer, NotificationDelivery
from tracking.services.ingest import IngestResult, ingest_operations
from tracking.validation import EnvelopeError, parse_envelope

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What the webhook answers: a status and, for refusals, D1's error shape."""

    status: int
    error_code: str = ""
    error: str = ""
    delivery_id: int | None = None

    @property
    def body(self) -> dict | None:
        if self.status < 300:
            return None
        return {"errorCode": self.error_code, "error": self.error}


@dataclass(frozen=True)
class Envelope:
    """The facts about one request that are kept on its delivery row."""

    issuer_id_in_path: str
    correlation_id: str = ""
    client_identity: str = ""
    remote_addr: str = ""
    content_type: str = ""
    byte_size: int = 0


def delivery_refuse(
    *,
    envelope: Envelope,
    status: int,
    error_code: str,
    error: str,
    body: bytes = b"",
    issuer: Issuer | None = None,
    extra: dict | None = None,
) -> Answer:
    """Record a refused delivery with its (capped) body and return the refusal to send.

    The record is best effort: when the database itself is the problem the refusal is still
    answered (and logged), because D1 will retry a 5xx anyway.
    """
    keep = settings.D1_REJECTED_BODY_KEEP_BYTES
    delivery_id = None
    try:
        delivery = NotificationDelivery.objects.create(
            issuer=issuer,
            issuer_id_in_path=_clean(envelope.issuer_id_in_path, 64),
            correlation_id=envelope.correlation_id,
            client_identity=_clean(envelope.client_identity, 255),
            remote_addr=_clean(envelope.remote_addr, 64),
            content_type=_clean(envelope.content_type, 255),
            byte_size=envelope.byte_size,
            status_code=status,
            error_code=error_code,
            error=_clean(error, 2000),
            body=kept_body(body, keep),
            body_truncated=len(body) > keep or envelope.byte_size > keep,
            **(extra or {}),
        )
        delivery_id = delivery.pk
    except DatabaseError:
        logger.exception(
            "could not record refused delivery issuer=%s status=%s code=%s",
            envelope.issuer_id_in_path,
            status,
            error_code,
        )
    logger.info(
        "delivery refused issuer=%s status=%s code=%s correlation_id=%s",
        envelope.issuer_id_in_path,
        status,
        error_code,
        envelope.correlation_id,
    )
    return Answer(status, error_code, error, delivery_id)


def delivery_receive(*, envelope: Envelope, issuer: Issuer, body: bytes) -> Answer:
    """Parse a body that passed the transport checks, store and apply it, and say what to answer.

    Writes one NotificationDelivery and, through `ingest_operations`, the events and orders, all
    in one transaction. Returns 204 only after that transaction has committed.
    """
    try:
        operations = parse_envelope(body, max_operations=settings.D1_WEBHOOK_MAX_OPERATIONS)
    except EnvelopeError as exc:
        return delivery_refuse(
            envelope=envelope,
            status=400,
            error_code=exc.error_code,
            error=exc.error,
            body=body,
            issuer=issuer,
        )

    try:
        with transaction.atomic():
            delivery = NotificationDelivery.objects.create(
                issuer=issuer,
                issuer_id_in_path=issuer.issuer_id,
                source=EventSource.WEBHOOK,
                correlation_id=envelope.correlation_id,
                client_identity=_clean(envelope.client_identity, 255),
                remote_addr=_clean(envelope.remote_addr, 64),
                content_type=_clean(envelope.content_type, 255),
                byte_size=envelope.byte_size,
                item_count=len(operations),
                status_code=204,
            )
            result = ingest_operations(
                issuer=issuer, operations=operations, source=EventSource.WEBHOOK, delivery=delivery
            )
            answer = _answer_for(result)
            delivery.new_count = result.new_count
            delivery.duplicate_count = result.duplicate_count
            delivery.rejected_count = result.rejected_count
            delivery.status_code = answer.status
            delivery.error_code = answer.error_code
            delivery.error = answer.error
            if answer.status >= 400:
                keep = settings.D1_REJECTED_BODY_KEEP_BYTES
                delivery.body = kept_body(body, keep)
                delivery.body_truncated = len(body) > keep
            delivery.save(
                update_fields=[
                    "new_count",
                    "duplicate_count",
                    "rejected_count",
                    "status_code",
                    "error_code",
                    "error",
                    "body",
                    "body_truncated",
                ]
            )
    except DatabaseError:
        logger.exception(
            "delivery not stored issuer=%s correlation_id=%s",
            issuer.issuer_id,
            envelope.correlation_id,
        )
        return delivery_refuse(
            envelope=envelope,
            status=503,
            error_code="TEMPORARILY_UNAVAILABLE",
            error="The notification could not be stored; retry later.",
            body=body,
            issuer=issuer,
        )
    logger.info(
        "delivery stored issuer=%s delivery=%s items=%s new=%s duplicate=%s rejected=%s "
        "correlation_id=%s",
        issuer.issuer_id,
        delivery.pk,
        result.item_count,
        result.new_count,
        result.duplicate_count,
        result.rejected_count,
        envelope.correlation_id,
    )
    return Answer(answer.status, answer.error_code, answer.error, delivery.pk)


def kept_body(body: bytes, keep: int) -> str:
    """What is kept of a refused body for staff: capped, storable text, card numbers masked."""
    return pan_mask_text(_clean(body[:keep].decode("utf-8", errors="replace"), keep))


def _clean(text: str, max_len: int) -> str:
    # NUL and lone surrogates cannot be stored in a PostgreSQL text column (nor sent to it).
    text = text[:max_len]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _answer_for(result: IngestResult) -> Answer:
    if result.rejected_count and result.rejected_count == result.item_count:
        # Nothing in the body can ever be applied: D1 must not retry it. The items are kept.
        return Answer(400, "FIELD_INVALID_VALUE", "No valid operation: " + "; ".join(result.errors))
    return Answer(204)
