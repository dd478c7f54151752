"""What D1 sent: each message (accepted or refused) and the calls refused at the gate."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tracking.models.issuers import Issuer


class EventSource(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    ON_DEMAND = "on_demand", "On-demand (reconciliation)"


class NotificationDelivery(models.Model):
    """One POST from D1 (or one on-demand answer), accepted or refused; never deleted."""

    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    issuer = models.ForeignKey(
        Issuer,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text=_("The registered issuer the message was for; empty when the issuer is unknown."),
        verbose_name=_("issuer"),
    )
    issuer_id_in_path = models.CharField(
        _("issuer id in the address"),
        max_length=64,
        blank=True,
        help_text=_("The issuer id D1 put in the address it called, as sent."),
    )
    source = models.CharField(
        _("came from"),
        max_length=16,
        choices=EventSource,
        default=EventSource.WEBHOOK,
        help_text=_("Sent by D1, or D1's answer when the portal asked."),
    )
    correlation_id = models.CharField(
        _("correlation id"),
        max_length=64,
        blank=True,
        db_index=True,
        help_text=_("Quote it to D1 support or search the logs with it."),
    )
    client_identity = models.CharField(
        _("caller"),
        max_length=255,
        blank=True,
        help_text=_("Who called, as the portal authenticated them (D1 client or certificate)."),
    )
    remote_addr = models.CharField(_("caller's address"), max_length=64, blank=True)
    content_type = models.CharField(_("format sent"), max_length=255, blank=True)
    byte_size = models.PositiveIntegerField(_("size (bytes)"), default=0)
    item_count = models.PositiveIntegerField(
        _("items"), default=0, help_text=_("Notification items in the message.")
    )
    new_count = models.PositiveIntegerField(
        _("new items"), default=0, help_text=_("Items the portal had not seen before.")
    )
    duplicate_count = models.PositiveIntegerField(
        _("repeated items"),
        default=0,
        help_text=_("Items D1 had already sent; counted, not stored again."),
    )
    rejected_count = models.PositiveIntegerField(
        _("refused items"),
        default=0,
        help_text=_("Items that failed validation; kept with their reason."),
    )
    status_code = models.PositiveSmallIntegerField(
        _("portal's answer (HTTP)"),
        help_text=_("What the portal answered D1: 2xx accepted, 4xx or 5xx refused."),
    )
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error = models.TextField(
        _("error"), blank=True, help_text=_("Why the message or an item was refused.")
    )
    # The body as received, capped: a refused one as text (card numbers masked), an accepted
    # one (while D1_KEEP_ACCEPTED_BODIES is on) written from its items as they are stored. The
    # D1 message page shows it and links every order it named.
    body = models.TextField(_("body as received"), blank=True)
    body_truncated = models.BooleanField(
        _("body cut short"),
        default=False,
        help_text=_("The body was longer than the portal keeps; only its start is stored."),
    )

    class Meta:
        verbose_name = _("D1 message")
        verbose_name_plural = _("D1 messages")
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(
                fields=["status_code", "-received_at"],
                name="delivery_status_recent",
            ),
            # observability: each issuer's latest POST, without walking back through the
            # others' (a silent issuer would otherwise cost a scan of every delivery).
            models.Index(
                fields=["issuer", "source", "-received_at"], name="delivery_issuer_recent"
            ),
        ]

    def __str__(self) -> str:
        return f"D1 message #{self.pk} ({self.status_code})"

    @property
    def is_rejected(self) -> bool:
        return self.status_code >= 400 or self.rejected_count > 0


class RefusalTally(models.Model):
    """Refused calls counted per source, minute and reason, instead of one row per call.

    Calls refused at the gate (authentication, permission, method, rate limit), of which nothing
    is kept, cost one counter, so a flood from one address adds at most one row a minute per
    reason. Never edited by staff.
    """

    minute = models.DateTimeField(_("minute"), db_index=True)
    source = models.CharField(
        _("caller's address"), max_length=64, help_text=_("The caller's address (IPv6: its /64).")
    )
    status_code = models.PositiveSmallIntegerField(
        _("portal's answer (HTTP)"),
        help_text=_(
            "401 not authenticated, 403 not allowed, 405 wrong method, 429 too many calls."
        ),
    )
    error_code = models.CharField(_("reason code"), max_length=64, blank=True)
    count = models.PositiveIntegerField(
        _("calls"), default=1, help_text=_("Calls refused for this reason in this minute.")
    )
    first_at = models.DateTimeField(_("first call"))
    last_at = models.DateTimeField(_("last call"))
    # Of the latest call in the minute: enough to tell D1 from a stranger.
    issuer_id_in_path = models.CharField(
        _("issuer id in the address"),
        max_length=64,
        blank=True,
        help_text=_("Of the latest call: the issuer id in the address it called."),
    )
    client_identity = models.CharField(
        _("caller"),
        max_length=255,
        blank=True,
        help_text=_("Of the latest call: who it said it was."),
    )
    correlation_id = models.CharField(
        _("correlation id"),
        max_length=64,
        blank=True,
        help_text=_("Of the latest call; search the logs with it."),
    )
    error = models.CharField(
        _("reason"),
        max_length=255,
        blank=True,
        help_text=_("Of the latest call: why it was refused."),
    )

    class Meta:
        verbose_name = _("refused call")
        verbose_name_plural = _("refused calls")
        ordering = ["-minute", "-last_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "source", "status_code", "error_code"],
                name="refusal_tally_per_minute",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.count} times {self.status_code} {self.error_code} from {self.source}"
