"""Deliveries: how one POST from D1 is recorded and answered, accepted or refused.

The HTTP contract lives here and nowhere else (the view reads the transport, calls
`webhook_answer`, and sends the `Answer` it gets; `REFUSALS` is the catalogue of refusals):
- 204 only after the delivery and its items are committed, whenever at least one item is valid;
  an item holding what no column can hold is stored escaped and invalid, the others apply;
- 400 for a body that can never be valid (not JSON, not D1's envelope, no valid item; never
  retried by D1): kept whole, up to the size cap, on its delivery for staff;
- 404 for an issuer that is not registered or not active, 413 above the size cap, 415 for a
  content type that is not JSON: kept on a delivery too (the caller passed the gate);
- 401, 403, 405, 429 (the caller's credentials, the method, too many failures) keep nothing
  the caller sent: they are counted per source, minute and reason in a `RefusalTally`, so a
  flood adds one row a minute, not one per call;
- 411 for a chunked body the server could not hand over (D1 may retry it), 503 for a
  transient fault (the database is away), so that D1 retries later.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from tracking.domain.masking import free_text_mask
from tracking.domain.validation import EnvelopeError, parse_envelope
from tracking.infrastructure.signals import delivery_answered
from tracking.intake.ingest import IngestBatch, IngestResult, ingest_prepare
from tracking.intake.ingest.store import ingest_store
from tracking.intake.issuer_memory import active_issuer
from tracking.intake.projector import FoldScope, projector_wake
from tracking.models import EventSource, Issuer, NotificationDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What the webhook answers: a status and, for refusals, D1's error shape."""

    status: int
    error_code: str = ""
    error: str = ""
    delivery_id: int | None = None
    retry_after: int | None = None  # seconds, for a refusal D1 should retry later

    @property
    def body(self) -> dict | None:
        if self.status < 300:
            return None
        return {"errorCode": self.error_code, "error": self.error}

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


@dataclass(frozen=True)
class Refusal:
    """One way the webhook says no: status, D1's errorCode, the text (with its `{values}`)."""

    status: int
    error_code: str
    text: str
    retry_after: int | None = None


# Every refusal the webhook writes itself, in the order its checks run.
REFUSALS: dict[str, Refusal] = {
    "issuer_unknown": Refusal(
        404, "ISSUER_NOT_FOUND", "Issuer {issuer!r} is not registered or not active."
    ),
    "too_large": Refusal(413, "PAYLOAD_TOO_LARGE", "The body is larger than {cap} bytes."),
    "not_json": Refusal(
        415, "UNSUPPORTED_MEDIA_TYPE", "The body must be sent as application/json."
    ),
    "length_required": Refusal(
        411,
        "LENGTH_REQUIRED",
        "The chunked body could not be read here; send it with Content-Length.",
    ),
    # The database is away: nothing was stored, D1 retries.
    "unavailable": Refusal(
        503,
        "TEMPORARILY_UNAVAILABLE",
        "The notification could not be stored; retry later.",
        retry_after=5,
    ),
}
# The errorCode of a refusal made before the view runs (credentials, method, too many failures),
# when the refusing check does not name its own reason.
GATE_ERROR_CODES = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    405: "METHOD_NOT_ALLOWED",
    429: "TOO_MANY_REQUESTS",
}


@dataclass(frozen=True)
class Envelope:
    """The facts about one request that are kept on its delivery row."""

    issuer_id_in_path: str
    correlation_id: str = ""
    client_identity: str = ""
    remote_addr: str = ""
    content_type: str = ""
    byte_size: int = 0


def webhook_answer(*, envelope: Envelope, issuer_id: str, body: bytes | None) -> Answer:
    """Check one POST that passed D1's credentials, store it, and say what to answer.

    `body` is what the transport could read, up to one byte past D1_WEBHOOK_MAX_BODY_BYTES, or
    None when a chunked body could not be read. The checks run in `REFUSALS`' order; a body
    that passes them all goes to `delivery_receive`.
    """
    issuer = active_issuer(issuer_id)
    if issuer is None:
        return refuse_as(
            "issuer_unknown", envelope=envelope, body=body, issuer=envelope.issuer_id_in_path
        )
    cap = settings.D1_WEBHOOK_MAX_BODY_BYTES
    if envelope.byte_size > cap:
        return refuse_as("too_large", envelope=envelope, body=body, issuer=issuer, cap=cap)
    if not _is_json(envelope.content_type):
        return refuse_as("not_json", envelope=envelope, body=body, issuer=issuer)
    if body is None:
        return refuse_as("length_required", envelope=envelope, issuer=issuer)
    if len(body) > cap:  # a chunked body, or one that lied about its length
        return refuse_as("too_large", envelope=envelope, body=body, issuer=issuer, cap=cap)
    envelope = replace(envelope, byte_size=len(body))
    return delivery_receive(envelope=envelope, issuer=issuer, body=body)


def refuse_as(
    key: str,
    *,
    envelope: Envelope,
    body: bytes | None = b"",
    issuer: Issuer | str | None = None,
    **values,
) -> Answer:
    """Record and return the refusal `REFUSALS[key]`; `values` fill its text."""
    refusal = REFUSALS[key]
    answer = delivery_refuse(
        envelope=envelope,
        status=refusal.status,
        error_code=refusal.error_code,
        error=refusal.text.format(issuer=issuer, **values),
        body=body or b"",
        issuer=issuer if isinstance(issuer, Issuer) else None,
    )
    return replace(answer, retry_after=refusal.retry_after)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


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
            issuer_id_in_path=text_clean(envelope.issuer_id_in_path, 64),
            correlation_id=envelope.correlation_id,
            client_identity=text_clean(envelope.client_identity, 255),
            remote_addr=text_clean(envelope.remote_addr, 64),
            content_type=text_clean(envelope.content_type, 255),
            byte_size=envelope.byte_size,
            status_code=status,
            error_code=error_code,
            error=text_clean(error, 2000),
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
    delivery_answered.send(
        sender=NotificationDelivery,
        issuer_id=envelope.issuer_id_in_path,
        status=status,
        error_code=error_code,
    )
    return Answer(status, error_code, error, delivery_id)


def delivery_receive(*, envelope: Envelope, issuer: Issuer, body: bytes) -> Answer:
    """Parse a body that passed the transport checks, store and apply it, and say what to answer.

    Writes one NotificationDelivery and, through `ingest_store`, the events (and new orders' rows),
    all or nothing. Returns 204 only after they are committed; the orders are folded by the
    projector, woken once they are.
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

    # What to answer follows from the items alone (every one invalid: 400), so the delivery row
    # is written whole by ingest's first statement.
    batch = ingest_prepare(operations)
    answer = _answer_for(batch.result)
    keep = settings.D1_REJECTED_BODY_KEEP_BYTES
    refused = answer.status >= 400
    if refused:
        kept, truncated = kept_body(body, keep), len(body) > keep
    elif settings.D1_KEEP_ACCEPTED_BODIES:
        kept, truncated = accepted_body(batch, keep)
    else:
        kept, truncated = "", False
    delivery = NotificationDelivery(
        issuer=issuer,
        issuer_id_in_path=issuer.issuer_id,
        source=EventSource.WEBHOOK,
        correlation_id=envelope.correlation_id,
        client_identity=text_clean(envelope.client_identity, 255),
        remote_addr=text_clean(envelope.remote_addr, 64),
        content_type=text_clean(envelope.content_type, 255),
        byte_size=envelope.byte_size,
        item_count=len(operations),
        status_code=answer.status,
        error_code=answer.error_code,
        error=answer.error,
        body=kept,
        body_truncated=truncated,
    )
    try:
        stored = ingest_store(issuer=issuer, batch=batch, delivery=delivery, now=timezone.now())
    except DatabaseError:
        logger.exception(
            "delivery not stored issuer=%s correlation_id=%s",
            issuer.issuer_id,
            envelope.correlation_id,
        )
        return refuse_as("unavailable", envelope=envelope, body=body, issuer=issuer)
    result = stored.result
    if stored.to_fold.order_ids or stored.to_fold.event_ids:
        _projector_wake(stored.to_fold)
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
    delivery_answered.send(
        sender=NotificationDelivery,
        issuer_id=issuer.issuer_id,
        status=answer.status,
        error_code=answer.error_code,
        new_count=result.new_count,
        duplicate_count=result.duplicate_count,
        rejected_count=result.rejected_count,
    )
    return Answer(answer.status, answer.error_code, answer.error, delivery.pk)


def _projector_wake(scope: FoldScope) -> None:
    """Wake the projector; a failure costs only the wake-up (the beat sweep folds later)."""
    try:
        projector_wake(scope)
    except Exception:
        logger.exception("projector wake-up failed; the sweep folds the stored items")


def kept_body(body: bytes, keep: int) -> str:
    """What is kept of a refused body for staff: capped, storable text, card numbers masked.

    Bytes that are not UTF-8 are written as `\\xNN` and NUL as `\\x00`, so the text shows
    exactly what was sent.
    """
    text = body[:keep].decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    return free_text_mask(text)  # a refused body is text: its ids are not told apart


def accepted_body(batch: IngestBatch, keep: int) -> tuple[str, bool]:
    """An accepted body as kept for the D1 message page, and whether it was cut short.

    Written from the body's items as they are stored (identifiers exactly as sent, card numbers
    in the text masked, what no column can hold escaped: the same rule as the events), each
    item once per copy D1 sent, repeated copies next to the first; capped at `keep` bytes.
    """
    items = [item.raw for item in batch.items.values() for _ in range(item.copies)]
    text = json.dumps({"operations": items}, ensure_ascii=False, separators=(",", ":"))
    encoded = text.encode("utf-8")
    if len(encoded) <= keep:
        return text, False
    return encoded[:keep].decode("utf-8", errors="ignore"), True


def text_clean(text: str, max_len: int) -> str:
    """`text` cut to `max_len`, as a text column can hold it (no NUL, no lone surrogate)."""
    # NUL and lone surrogates cannot be stored in a PostgreSQL text column (nor sent to it).
    text = text[:max_len]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _answer_for(result: IngestResult) -> Answer:
    if result.rejected_count and result.rejected_count == result.item_count:
        # Nothing in the body can ever be applied: D1 must not retry it. The items are kept.
        reasons = "; ".join(result.errors)
        return Answer(
            400, "FIELD_INVALID_VALUE", text_clean(f"No valid operation: {reasons}", 2000)
        )
    return Answer(204)
