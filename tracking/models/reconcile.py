"""Asking D1 about one order: each on-demand call, why it was made and what it did."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import JSONField, Value
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tracking.models.deliveries import NotificationDelivery
from tracking.models.orders import CardOrder


class ReconcileOutcome(models.TextChoices):
    CHANGED = "changed", "Changed the order"
    UNCHANGED = "unchanged", "D1 said the same"
    NOT_FOUND = "not_found", "Unknown at D1"
    ERROR = "error", "Error"


class ReconcileTrigger(models.TextChoices):
    SWEEP = "sweep", "Sweep"
    STAFF = "staff", "Staff (reconcile now)"
    COMMAND = "command", "Command"


class ReconcileAttempt(models.Model):
    """One on-demand productionStatus call for one order and what it did; never edited."""

    order = models.ForeignKey(
        CardOrder,
        on_delete=models.PROTECT,
        related_name="reconcile_history",
        verbose_name=_("card order"),
    )
    started_at = models.DateTimeField(_("asked at"), default=timezone.now)
    trigger = models.CharField(
        _("asked by"),
        max_length=16,
        choices=ReconcileTrigger,
        default=ReconcileTrigger.SWEEP,
        help_text=_("The automatic check, a staff member, or a command."),
    )
    # Why the order was asked about: a flag (conflict, unknown_status, gap), stage_threshold,
    # past_due, awaiting_delivery, or empty when staff or a command asked without a reason.
    reason = models.CharField(_("why asked"), max_length=32, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("staff member"),
    )
    correlation_id = models.CharField(
        _("correlation id"),
        max_length=64,
        blank=True,
        help_text=_("Quote it to D1 support or search the logs with it."),
    )
    # None when no HTTP answer came back (timeout, connection refused, configuration).
    http_status = models.PositiveSmallIntegerField(
        _("D1's HTTP status"),
        null=True,
        blank=True,
        help_text=_("Empty when D1 did not answer (time-out, connection refused)."),
    )
    latency_ms = models.PositiveIntegerField(
        _("time to answer (ms)"), null=True, blank=True, help_text=_("How long D1 took to answer.")
    )
    outcome = models.CharField(_("result"), max_length=16, choices=ReconcileOutcome)
    error = models.TextField(_("error"), blank=True, help_text=_("Why the call to D1 failed."))
    items_received = models.PositiveIntegerField(
        _("items in the answer"), default=0, help_text=_("Notification items D1 returned.")
    )
    status_before = models.CharField(_("production step before"), max_length=64, blank=True)
    status_after = models.CharField(_("production step after"), max_length=64, blank=True)
    # What D1 answered for this order, as staff read it: the operation's status, the production
    # status, D1's error and the shipment (kept even when the answer repeated a stored item).
    answer = models.JSONField(
        _("D1's answer"), default=dict, blank=True, db_default=Value({}, JSONField())
    )
    delivery = models.ForeignKey(
        NotificationDelivery,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("D1 message"),
        help_text=_("The answer as the portal stored it."),
    )

    class Meta:
        # One name for it on every page: the sidebar, the list's title, the order page.
        verbose_name = _("call to D1")
        verbose_name_plural = _("calls to D1")
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["order", "-started_at"], name="attempt_order_recent"),
            models.Index(fields=["outcome", "-started_at"], name="attempt_outcome_recent"),
        ]

    def __str__(self) -> str:
        return f"reconcile #{self.pk} of order {self.order_id}: {self.outcome}"
