"""The events behind an order: each distinct notification item, and pull & change results."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tracking.domain.fold import Outcome
from tracking.models.deliveries import EventSource, NotificationDelivery
from tracking.models.issuers import Issuer
from tracking.models.orders import CardOrder, translated


class OperationEvent(models.Model):
    """One distinct notification item, append-only; copies only raise `times_received`."""

    # Neither foreign key has an index of its own: `event_unique_fingerprint` starts with the
    # issuer and `event_order_timeline` with the order (index budget, docs/benchmarks.md).
    issuer = models.ForeignKey(
        Issuer,
        on_delete=models.PROTECT,
        related_name="events",
        verbose_name=_("issuer"),
        db_index=False,
    )
    order = models.ForeignKey(
        CardOrder,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        verbose_name=_("order"),
        db_index=False,
    )
    delivery = models.ForeignKey(
        NotificationDelivery,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("D1 message"),
        help_text=_("The message that first brought this item."),
    )
    fingerprint = models.CharField(
        _("content fingerprint"),
        max_length=64,
        help_text=_("A digest of the item's content: the same item sent again has the same one."),
    )
    card_id = models.CharField(_("card id"), max_length=48, blank=True)
    operation_id = models.CharField(_("operation id"), max_length=64, blank=True)
    operation = models.CharField(
        _("operation"),
        max_length=64,
        blank=True,
        help_text=_("Card production, tracking only or order change."),
    )
    operation_status = models.CharField(
        _("operation status"),
        max_length=32,
        blank=True,
        help_text=_("In progress, succeeded or failed."),
    )
    production_status = models.CharField(
        _("production step"),
        max_length=64,
        blank=True,
        help_text=_("Where the card was in production."),
    )
    shipment_status = models.CharField(
        _("carrier status"), max_length=64, blank=True, help_text=_("What the carrier reported.")
    )
    payload = models.JSONField(_("item as received"))
    source = models.CharField(
        _("came from"), max_length=16, choices=EventSource, default=EventSource.WEBHOOK
    )
    first_received_at = models.DateTimeField(_("first received"), default=timezone.now)
    last_received_at = models.DateTimeField(_("last received"), default=timezone.now)
    times_received = models.PositiveIntegerField(
        _("times received"), default=1, help_text=_("How often D1 sent this same item.")
    )
    outcome = models.CharField(
        _("what it did"),
        max_length=32,
        choices=translated(Outcome.CHOICES),
        blank=True,
        help_text=_("What this item did to its order."),
    )
    validation_error = models.TextField(
        _("why it was refused"), blank=True, help_text=_("Empty when the item passed validation.")
    )
    # Null between storing and applying; the safety-net sweep applies what a crash left behind.
    applied_at = models.DateTimeField(
        _("applied"),
        null=True,
        blank=True,
        help_text=_("When the order was updated from this item; empty until then."),
    )

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["first_received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "fingerprint"], name="event_unique_fingerprint"
            ),
        ]
        indexes = [
            models.Index(fields=["order", "first_received_at"], name="event_order_timeline"),
            models.Index(fields=["outcome", "-first_received_at"], name="event_outcome_recent"),
            models.Index(
                fields=["first_received_at"],
                name="event_unapplied",
                condition=Q(applied_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_id} {self.production_status or self.operation} ({self.outcome})"


class OrderChangeResult(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    PENDING = "pending", "Pending"
    UNKNOWN = "unknown", "Unknown"


class OrderChange(models.Model):
    """One pull & change result (an UPDATE_ORDER item), parsed, linked to the card's order.

    Unknown shapes are kept as they came, flagged (`is_known_shape` false), never refused.
    """

    issuer = models.ForeignKey(
        Issuer, on_delete=models.PROTECT, related_name="+", verbose_name=_("issuer")
    )
    # Derived from its event: it goes when the event goes (retention), never otherwise.
    event = models.OneToOneField(
        OperationEvent, on_delete=models.CASCADE, related_name="change", verbose_name=_("event")
    )
    order = models.ForeignKey(
        CardOrder,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="changes",
        verbose_name=_("order"),
    )
    card_id = models.CharField(max_length=48, verbose_name=_("card id"))
    operation_id = models.CharField(max_length=64, blank=True, verbose_name=_("operation id"))
    change_type = models.CharField(max_length=32, blank=True, verbose_name=_("change type"))
    result = models.CharField(max_length=16, choices=OrderChangeResult, verbose_name=_("result"))
    reason = models.TextField(blank=True, verbose_name=_("reason"))
    is_known_shape = models.BooleanField(default=True, verbose_name=_("is known shape"))
    start_time = models.DateTimeField(null=True, blank=True, verbose_name=_("start time"))
    end_time = models.DateTimeField(null=True, blank=True, verbose_name=_("end time"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("pull & change result")
        verbose_name_plural = _("pull & change results")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["issuer", "card_id"], name="change_card"),
            models.Index(fields=["order", "-created_at"], name="change_order_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.change_type or 'change'} {self.result} for {self.card_id}"
