"""Admin pages of the trust boundary: the audit trail (read-only) and D1 clients."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from tracking.admin.base import EvidenceAdmin, PortalModelAdmin
from tracking.admin.security import GrantedHistoryMixin
from tracking.d1.clients import d1_client_create, d1_client_deactivate
from tracking.models import AuditEntry, D1Client
from tracking.services.issuer_grants import audit_visible_to, issuers_visible_to


@admin.register(AuditEntry)
class AuditEntryAdmin(EvidenceAdmin):
    list_display = ["at", "username", "action", "target_type", "target_repr", "ip_address"]
    list_filter = ["action", "target_type"]
    search_fields = ["=username", "=target_id", "action", "target_repr"]
    date_hierarchy = "at"
    fields = [
        "at",
        "username",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "details",
        "ip_address",
        "user_agent",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        # Nothing about an issuer outside the reader's grant (tracking.services.issuer_grants).
        return audit_visible_to(request.user, super().get_queryset(request))


class D1ClientAddForm(forms.ModelForm):
    name = forms.CharField(
        max_length=255, required=False, help_text=_("A label for staff; defaults to the issuer.")
    )

    class Meta:
        model = D1Client
        fields = ["issuer"]


@admin.register(D1Client)
class D1ClientAdmin(GrantedHistoryMixin, SimpleHistoryAdmin, PortalModelAdmin):
    """D1 clients: created with a secret shown once, switched off, or removed."""

    issuer_path = "issuer"

    list_display = ["client_id", "issuer", "is_active", "created_at"]
    list_filter = ["is_active", "issuer"]
    list_select_related = ["issuer", "application"]
    search_fields = ["=application__client_id", "issuer__issuer_id"]
    actions = ["deactivate"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = D1ClientAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["issuer", "name"] if obj is None else ["client_id", "issuer", "is_active"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["client_id", "issuer", "created_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "issuer":
            kwargs["queryset"] = issuers_visible_to(request.user).filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=_("client id"), ordering="application__client_id")
    def client_id(self, client: D1Client) -> str:
        return client.application.client_id

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        credentials = d1_client_create(
            issuer=form.cleaned_data["issuer"], name=form.cleaned_data.get("name", "")
        )
        obj.pk = credentials.client.pk
        obj.application = credentials.client.application
        obj.created_at = credentials.client.created_at
        request._d1_credentials = credentials

    def response_add(self, request, obj, post_url_continue=None):
        credentials = getattr(request, "_d1_credentials", None)
        if credentials is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered once, never stored: not in a message (cookie), not in the database.
        return TemplateResponse(
            request,
            "tracking/d1_client_created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("D1 client created"),
                "credentials": credentials,
                "token_path": "/authz/d1/v1/oauth2/token",
            },
        )

    @admin.action(description=_("Switch off and revoke their tokens"), permissions=["change"])
    def deactivate(self, request, queryset) -> None:
        revoked = sum(d1_client_deactivate(client=client) for client in queryset)
        messages.success(
            request,
            _("Switched off %(clients)s client(s); %(tokens)s token(s) revoked.")
            % {"clients": queryset.count(), "tokens": revoked},
        )
