"""A test-only admin site whose order admin uses the trust-boundary mixins, as the real one must."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import path
from unfold.sites import UnfoldAdminSite

import config.urls
from tracking.admin_security import (
    EvidenceAdminMixin,
    OperatorPermissionsMixin,
    PersonalFieldsMaskMixin,
    audited_action,
    base_model_admin,
)
from tracking.models import CardOrder, OperationEvent

# The theme's templates replace the admin's everywhere, so the test site must be the theme's too.
site = UnfoldAdminSite(name="trust_admin")


class EventInline(PersonalFieldsMaskMixin, admin.TabularInline):
    model = OperationEvent
    fk_name = "order"
    fields = ["production_status", "outcome", "payload"]
    readonly_fields = fields
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class OrderAdmin(
    PersonalFieldsMaskMixin, OperatorPermissionsMixin, EvidenceAdminMixin, base_model_admin()
):
    list_display = ["card_id", "production_status", "tracking_number", "carrier"]
    fields = ["card_id", "production_status", ("carrier", "tracking_number"), "shipment"]
    readonly_fields = ["card_id", "production_status", "carrier", "tracking_number", "shipment"]
    inlines = [EventInline]
    actions = ["reconcile_now"]

    @audited_action(permission="reconcile", action="order.reconcile", description="Reconcile now")
    def reconcile_now(self, request, queryset):
        messages.info(request, f"asked D1 about {queryset.count()} order(s)")


site.register(CardOrder, OrderAdmin)

urlpatterns = [path("trust-admin/", site.urls), *config.urls.urlpatterns]
