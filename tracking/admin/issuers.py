"""Issuers: configuration, every edit kept in its history."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from tracking.admin import display as admin_display
from tracking.admin.base import PortalModelAdmin
from tracking.admin.security import GrantedHistoryMixin
from tracking.d1.client import D1Config, D1Error
from tracking.models import (
    Issuer,
)
from tracking.services.audit import Actor
from tracking.services.issuer_grants import issuers_grant

# ---------------------------------------------------------------------------- issuers


@admin.register(Issuer)
class IssuerAdmin(GrantedHistoryMixin, SimpleHistoryAdmin, PortalModelAdmin):
    """Issuers are configuration: every edit keeps its history (and is audited)."""

    issuer_path = ""

    list_display = ["issuer_id", "name", "active_badge", "d1_key_id", "created_at"]
    search_fields = ["issuer_id", "name"]
    list_filter = ["is_active"]
    fields = [
        "issuer_id",
        "name",
        "is_active",
        "time_zone",
        "d1_key_id",
        "d1_key_location",
        "created_at",
    ]
    readonly_fields = ["d1_key_location", "created_at"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change and not request.user.is_superuser:
            # Whoever registers an issuer may see it (audited as any grant).
            issuers_grant(
                user=request.user, issuer_ids=[obj.issuer_id], actor=Actor.of_request(request)
            )

    @admin.display(description=_("D1 key location"))
    def d1_key_location(self, issuer: Issuer) -> str:
        """Where the worker reads this issuer's key: settings or D1_KEY_DIR, never the form."""
        try:
            config = D1Config.for_issuer(issuer)
        except D1Error as exc:
            return _("Not usable: %(error)s") % {"error": exc}
        if not config.private_key_path:
            return _("Not configured (D1_PRIVATE_KEY_PATH or D1_KEY_DIR)")
        return f"{config.private_key_path} (key id {config.key_id or '-'})"

    @admin.display(description=_("active"), ordering="is_active")
    def active_badge(self, issuer: Issuer) -> str:
        return (
            admin_display.badge("Active", "success")
            if issuer.is_active
            else admin_display.badge("Inactive", "neutral")
        )
