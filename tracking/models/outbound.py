"""The outbox of card-order events, the issuers' endpoints, and every delivery attempt to them."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# The event types, in the order a card order usually meets them.
EVENT_TYPES: tuple[str, ...] = (
    "card_order.registered",
    "card_order.stage_changed",
    "card_order.shipped",
    "card_order.delivery_updated",
    "card_order.delivered",
    "card_order.exception",
    "card_order.failed",
    "card_order.cancelled",
    "card_order.superseded",
    "card_order.silent",
)


class EventEndpoint(models.Model):
    """An issuer system's URL that receives the issuer's card-order events, signed."""

    issuer = models.ForeignKey(
        "tracking.Issuer", on_delete=models.PROTECT, related_name="event_endpoints"
    )
    url = models.URLField(_("address"), max_length=2048)
    event_types = models.JSONField(
        _("event types"),
        default=list,
        blank=True,
        help_text=_("The event types sent to this address; none chosen means every type."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    # Encrypted with the portal's key (tracking.outbound.secrets): the portal must sign with it,
    # so only a digest would not do; it is shown once, when made or rotated.
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(editable=False, blank=True)
    previous_secret_expires_at = models.DateTimeField(
        _("previous secret valid until"), null=True, blank=True, editable=False
    )
    # Since when every attempt has failed; cleared by a success. Past the threshold
    # (EVENT_ENDPOINT_DISABLE_AFTER) the endpoint is disabled.
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True, editable=False)
    disabled_reason = models.CharField(
        _("why disabled"), max_length=255, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("event endpoint")
        verbose_name_plural = _("event endpoints")
        ordering = ["issuer__issuer_id", "id"]
        permissions = [
            ("replay_eventendpoint", "Can replay events to an endpoint"),
            ("rotate_eventendpoint", "Can rotate an endpoint's signing secret"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.issuer_id})"

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class OutboundEvent(models.Model):
    """One change of a card order, written in the transaction that changed it; never edited.

    `payload` is the event's `data`: the order as the read API shows it, its per-order
    `sequence`, whether a re-derivation made it, and the reason of an exception.
    """

    event_id = models.CharField(_("event id"), max_length=40, unique=True)
    issuer = models.ForeignKey("tracking.Issuer", on_delete=models.PROTECT, related_name="+")
    # Goes with its order (retention), like the order's own events.
    order = models.ForeignKey(
        "tracking.CardOrder", on_delete=models.CASCADE, related_name="outbound_events"
    )
    type = models.CharField(_("type"), max_length=40)
    sequence = models.PositiveIntegerField(_("sequence"))
    payload = models.JSONField(_("data"), encoder=DjangoJSONEncoder)
    rederive = models.BooleanField(_("made by a re-derivation"), default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # The writing transaction's id on PostgreSQL (a column default set by migration 0017), 0
    # elsewhere: the pull feed's position, read only below the oldest running transaction.
    txid = models.BigIntegerField(editable=False, db_default=0)

    class Meta:
        verbose_name = _("outbound event")
        verbose_name_plural = _("outbound events")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "sequence"], name="outbound_order_sequence"),
        ]
        indexes = [
            models.Index(fields=["txid", "id"], name="outbound_feed_position"),
            models.Index(fields=["issuer", "txid", "id"], name="outbound_issuer_feed"),
            models.Index(fields=["order", "type"], name="outbound_order_type"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    DELIVERED = "delivered", _("Delivered")
    GAVE_UP = "gave_up", _("Given up")


class EventDelivery(models.Model):
    """One event owed to one endpoint (a replay owes it again); retried until it succeeds."""

    event = models.ForeignKey(OutboundEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(EventEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        _("status"), max_length=16, choices=DeliveryStatus, default=DeliveryStatus.PENDING
    )
    is_replay = models.BooleanField(_("replay"), default=False)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    # When the next attempt is due; also the lease of a worker sending it now.
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("last answer (HTTP)"), null=True)
    last_error = models.CharField(_("last error"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("event delivery")
        verbose_name_plural = _("event deliveries")
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="event_delivery_due",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["endpoint", "-id"], name="event_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One HTTP attempt of a delivery: what the endpoint answered and how fast; never edited."""

    delivery = models.ForeignKey(EventDelivery, on_delete=models.CASCADE, related_name="tries")
    number = models.PositiveIntegerField(_("attempt"))
    started_at = models.DateTimeField(_("sent at"), default=timezone.now)
    status_code = models.PositiveSmallIntegerField(_("answer (HTTP)"), null=True, blank=True)
    latency_ms = models.PositiveIntegerField(_("time to answer (ms)"), null=True, blank=True)
    response_start = models.TextField(_("answer's first bytes"), blank=True)
    error = models.CharField(_("error"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.status_code}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
