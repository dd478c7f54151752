"""Staff-side records: acknowledgements of an order's exception, and each member's preferences."""

from __future__ import annotations

from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tracking.models.orders import CardOrder


class OrderAcknowledgement(models.Model):
    """A staff note that an order's exception was seen and handled.

    It takes the order out of the Exceptions queue until the exception itself changes (a new
    failure or error code, a new conflict, a new unknown code): `CardOrder.exception_changed_at`.
    """

    order = models.ForeignKey(
        CardOrder,
        on_delete=models.PROTECT,
        related_name="acknowledgements",
        verbose_name=_("order"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("user"),
    )
    note = models.TextField(verbose_name=_("note"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("acknowledgement")
        verbose_name_plural = _("acknowledgements")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["order", "-created_at"], name="ack_order_recent")]

    def __str__(self) -> str:
        return f"acknowledgement of {self.order_id} at {self.created_at:%Y-%m-%d %H:%M}"


def validate_time_zone(value: str) -> None:
    """An IANA zone name (Asia/Tokyo, UTC); empty means the site's default."""
    if value and value not in available_timezones():
        raise ValidationError(_("“%(zone)s” is not a time zone."), params={"zone": value})


class StaffPreference(models.Model):
    """The language and time zone one staff member reads the back office in.

    Empty means "not chosen": the browser's language, then the site's (`LANGUAGE_CODE`); the
    site's zone (`PORTAL_TIME_ZONE`, else the zone of the language).
    `tracking.middleware.staff.StaffPreferenceMiddleware` applies them on every request.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="staff_preference",
        verbose_name=_("staff member"),
    )
    language = models.CharField(
        _("language"),
        max_length=8,
        blank=True,
        choices=settings.LANGUAGES,
        help_text=_("Empty: the language your browser asks for."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_("Every time in the back office is shown in this zone. Empty: the site's zone."),
    )

    class Meta:
        verbose_name = _("my preferences")
        verbose_name_plural = _("my preferences")

    def __str__(self) -> str:
        return str(_("Preferences of %(user)s") % {"user": self.user})
