"""Back-office admin: card orders with their timeline; events and deliveries are evidence."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from tracking.models import CardOrder, Issuer, NotificationDelivery, OperationEvent


class EvidenceAdmin(admin.ModelAdmin):
    """Events and deliveries are what D1 sent: nobody adds, edits or deletes them."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Issuer)
class IssuerAdmin(admin.ModelAdmin):
    list_display = ["issuer_id", "name", "is_active", "created_at"]
    search_fields = ["issuer_id", "name"]
    list_filter = ["is_active"]


class OrderEventInline(admin.TabularInline):
    model = OperationEvent
    fk_name = "order"
    extra = 0
    can_delete = False
    ordering = ["first_received_at", "id"]
    fields = [
        "first_received_at",
        "source",
        "production_status",
        "operation_status",
        "shipment_status",
        "outcome",
        "times_received",
        "raw_payload",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="payload")
    def raw_payload(self, event: OperationEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.payload, indent=2, sort_keys=True))


@admin.register(CardOrder)
class CardOrderAdmin(EvidenceAdmin):
    list_display = [
        "card_id",
        "operation_id",
        "issuer",
        "production_status",
        "operation_status",
        "shipment_status",
        "needs_reconcile",
        "reconcile_reason",
        "updated_at",
    ]
    list_filter = [
        "production_status",
        "operation_status",
        "is_terminal",
        "needs_reconcile",
        "reconcile_reason",
        "issuer",
    ]
    list_select_related = ["issuer"]
    search_fields = [
        "=card_id",
        "=operation_id",
        "=issuer_request_id",
        "=tracking_number",
        "input_file_name",
    ]
    show_full_result_count = False
    inlines = [OrderEventInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_change_permission(self, request, obj=None) -> bool:
        # The page is viewable; nothing on it is editable.
        return False


@admin.register(OperationEvent)
class OperationEventAdmin(EvidenceAdmin):
    list_display = [
        "first_received_at",
        "card_id",
        "operation_id",
        "operation",
        "production_status",
        "outcome",
        "source",
        "times_received",
    ]
    list_filter = ["outcome", "source", "operation"]
    list_select_related = ["issuer"]
    search_fields = ["=card_id", "=operation_id", "=fingerprint"]
    show_full_result_count = False


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(EvidenceAdmin):
    list_display = [
        "received_at",
        "issuer_id_in_path",
        "status_code",
        "item_count",
        "new_count",
        "duplicate_count",
        "rejected_count",
        "error_code",
        "correlation_id",
    ]
    list_filter = ["status_code", "source", "error_code"]
    search_fields = ["=correlation_id", "issuer_id_in_path"]
    show_full_result_count = False
