"""Issuers: the D1 issuers whose notifications the portal accepts, their ids and zones."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history import register as history_register

# An issuer's D1 key id names its key file (<D1_KEY_DIR>/<key id>.pem): a file name, no path.
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# D1's issuerId: exactly 10 characters (SPEC §1.1), letters and digits as every issuer D1 names;
# it becomes a segment of D1's URLs, so '/', '?', '#', '@' and '.' never enter.
ISSUER_ID_PATTERN = r"^[A-Za-z0-9]{10}$"


def zone_by_name(name: str) -> dt.tzinfo:
    """The zone of an IANA name; UTC for an empty or unknown name."""
    if name in ("", "UTC"):
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def zone_name_validate(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            _("%(name)s is not a time zone name such as UTC or Europe/Paris."),
            params={"name": name},
        ) from exc


class Issuer(models.Model):
    """A D1 issuer whose notifications the portal accepts."""

    issuer_id = models.CharField(
        _("D1 issuer id"),
        max_length=10,
        unique=True,
        validators=[
            RegexValidator(
                ISSUER_ID_PATTERN, _("Exactly 10 letters or digits, as D1 names issuers.")
            )
        ],
    )
    name = models.CharField(max_length=200, verbose_name=_("name"))
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    # The key id of this issuer's own D1 key, when it differs from the settings. The key is read
    # from <D1_KEY_DIR>/<key id>.pem (tracking.d1.client.D1Config): where keys live is never
    # taken from the database, so no admin screen can point the worker at another file.
    d1_key_id = models.CharField(
        _("D1 key id"),
        max_length=100,
        blank=True,
        validators=[
            RegexValidator(
                KEY_ID_PATTERN,
                "Letters, digits, dot, dash and underscore; starting with a letter or digit.",
            )
        ],
    )
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )
    # The zone a time D1 sends without one is read in (the timeline says when it was assumed).
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        default="UTC",
        db_default="UTC",
        validators=[zone_name_validate],
        help_text=_(
            "Times D1 sends without a zone are read in this zone (an IANA name such as "
            "Asia/Tokyo; empty is UTC). After a change, run `manage.py rederive --issuer`."
        ),
    )

    class Meta:
        verbose_name = _("issuer")
        verbose_name_plural = _("issuers")
        ordering = ["issuer_id"]

    def __str__(self) -> str:
        return f"{self.issuer_id} ({self.name})" if self.name else self.issuer_id

    @property
    def zone(self) -> dt.tzinfo:
        """The issuer's zone; UTC when the stored name is not a zone this system knows."""
        return zone_by_name(self.time_zone)


# Staff edits of configuration keep their history (who, when, what); events need none.
history_register(Issuer)
