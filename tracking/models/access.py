"""Who may call or read: D1's OAuth clients, read-API tokens and staff users' issuer grants."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings
from simple_history.models import HistoricalRecords

from tracking.models.issuers import Issuer


class D1Client(models.Model):
    """The OAuth client D1 gets bearer tokens with, bound to the one issuer it may notify for."""

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="d1_client",
        verbose_name=_("application"),
    )
    issuer = models.ForeignKey(
        Issuer, on_delete=models.PROTECT, related_name="d1_clients", verbose_name=_("issuer")
    )
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("D1 client")
        ordering = ["issuer__issuer_id", "id"]

    def __str__(self) -> str:
        return f"D1 client {self.application.client_id} for {self.issuer.issuer_id}"


class ReadApiToken(models.Model):
    """A read-API token of one user: only its SHA-256 digest is kept, and it expires.

    The token itself is shown once when it is made (`tracking.services.api_tokens`); deleting
    the row revokes it.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="read_api_tokens",
        verbose_name=_("user"),
    )
    name = models.CharField(
        max_length=100,
        help_text=_("What the token is for (an integration)."),
        verbose_name=_("name"),
    )
    # The first characters of the token, so that staff can tell tokens apart; not enough to use.
    prefix = models.CharField(max_length=8, verbose_name=_("prefix"))
    digest = models.CharField(max_length=64, unique=True, verbose_name=_("digest"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    # Narrower than its user's grant when chosen at creation; empty: every issuer the user
    # may see (tracking.services.issuer_grants).
    issuers = models.ManyToManyField(
        Issuer,
        blank=True,
        related_name="+",
        verbose_name=_("issuers"),
        help_text=_(
            "Only these issuers (within its user's grant); none chosen: all of the user's."
        ),
    )

    class Meta:
        verbose_name = _("read-API token")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class IssuerGrant(models.Model):
    """One issuer a staff user may see and act on; superusers see every issuer without one.

    Read through `tracking.services.issuer_grants`, changed through its `issuers_grant` and
    `issuers_revoke` (audited).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="issuer_grants",
        verbose_name=_("user"),
    )
    issuer = models.ForeignKey(
        Issuer, on_delete=models.CASCADE, related_name="grants", verbose_name=_("issuer")
    )
    granted_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("granted at")
    )

    class Meta:
        verbose_name = _("issuer grant")
        verbose_name_plural = _("issuer grants")
        ordering = ["issuer__issuer_id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "issuer"], name="grant_unique_per_user_issuer")
        ]

    def __str__(self) -> str:
        return f"{self.issuer.issuer_id} for user {self.user_id}"
