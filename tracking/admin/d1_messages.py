"""What D1 sent: every delivery, every distinct item, and the refused calls; read-only."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin import DateFieldListFilter
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from tracking import labels
from tracking.admin import display as admin_display
from tracking.admin import filters as admin_filters
from tracking.admin.base import EvidenceAdmin
from tracking.admin.timeline import timeline_entries
from tracking.data_care import PERSONAL_MASK, can_see_personal
from tracking.models import (
    NotificationDelivery,
    OperationEvent,
    RefusalTally,
)

# ---------------------------------------------------------------------------- evidence


@admin.register(OperationEvent)
class OperationEventAdmin(EvidenceAdmin):
    issuer_path = "issuer"
    # What the event did (out of order, unknown code, invalid) right after the card.
    list_display = [
        "card_link",
        "outcome_badge",
        "status_column",
        "source_label",
        "times_received",
        "first_seen",
    ]
    # The card links to its order; the time opens the event itself.
    list_display_links = ["first_seen"]
    list_select_related = ["issuer"]
    # Newest first by primary key: ids grow with time and need no extra index.
    ordering = ["-id"]
    search_fields = ["=card_id", "=operation_id", "=fingerprint"]
    search_help_text = _("Card id, operation id or content fingerprint (exact)")
    list_filter = [
        admin_filters.OutcomeFilter,
        admin_filters.SourceFilter,
        ("first_received_at", admin_filters.DateRangeFilter),
        admin_filters.IssuerFilter,
    ]
    exclude = ["payload"]

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": _("Events: every distinct item D1 sent"), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("first seen"), ordering="id")
    def first_seen(self, event: OperationEvent) -> str:
        return admin_display.when(event.first_received_at)

    @admin.display(description=_("status"), ordering="production_status")
    def status_column(self, event: OperationEvent) -> str:
        if event.production_status:
            return admin_display.production_badge(event.production_status, inline=True)
        if event.shipment_status:
            return admin_display.shipment_badge(event.shipment_status, inline=True)
        return labels.label_text("operation", event.operation) if event.operation else "—"

    @admin.display(description=_("came from"), ordering="source")
    def source_label(self, event: OperationEvent) -> str:
        found = labels.label("source", event.source)
        return format_html('<span title="{}">{}</span>', found.help, found.text)

    def get_readonly_fields(self, request, obj=None):
        personal = can_see_personal(request.user)
        return ["raw_payload" if personal else "masked_payload"]

    # The event page: codes with their labels, dates in the one format, in the order staff read.
    detail_fields = [
        "card_id",
        "operation_id",
        "order",
        "issuer",
        "operation_detail",
        "production_detail",
        "operation_status_detail",
        "shipment_detail",
        "outcome_detail",
        "validation_error",
        "source_detail",
        "first_received",
        "last_received",
        "times_received",
        "applied",
        "delivery",
        "fingerprint",
    ]

    def get_fields(self, request, obj=None):
        return [*self.detail_fields, *self.get_readonly_fields(request, obj)]

    @admin.display(description=_("operation"))
    def operation_detail(self, event: OperationEvent) -> str:
        return admin_display.coded("operation", event.operation, empty="—")

    @admin.display(description=_("production step"))
    def production_detail(self, event: OperationEvent) -> str:
        if not event.production_status:
            return "—"
        return admin_display.production_badge(event.production_status, inline=True)

    @admin.display(description=_("operation status"))
    def operation_status_detail(self, event: OperationEvent) -> str:
        return admin_display.operation_badge(event.operation_status, inline=True)

    @admin.display(description=_("carrier status"))
    def shipment_detail(self, event: OperationEvent) -> str:
        return admin_display.shipment_badge(event.shipment_status, inline=True) or "—"

    @admin.display(description=_("what it did"))
    def outcome_detail(self, event: OperationEvent) -> str:
        return admin_display.coded("outcome", event.outcome)

    @admin.display(description=_("came from"))
    def source_detail(self, event: OperationEvent) -> str:
        return admin_display.coded("source", event.source)

    @admin.display(description=_("first received"))
    def first_received(self, event: OperationEvent) -> str:
        return admin_display.when(event.first_received_at)

    @admin.display(description=_("last received"))
    def last_received(self, event: OperationEvent) -> str:
        return admin_display.when(event.last_received_at)

    @admin.display(description=_("applied"))
    def applied(self, event: OperationEvent) -> str:
        if event.applied_at is None:
            return _("Not applied yet")
        return admin_display.when(event.applied_at)

    @admin.display(description=_("card / operation"), ordering="card_id")
    def card_link(self, event: OperationEvent) -> str:
        operation = format_html(
            '<span class="bo-subtle bo-id block" title="{}">{}</span>',
            _("Operation id %(id)s") % {"id": event.operation_id},
            event.operation_id,
        )
        if event.order_id is None:
            return format_html(
                '<span class="bo-id" title="{}">{}</span>{}',
                event.card_id,
                event.card_id,
                operation,
            )
        url = reverse("admin:tracking_cardorder_change", args=[event.order_id])
        return format_html(
            '<a class="bo-link bo-id" href="{}" title="{}">{}</a>{}',
            url,
            event.card_id,
            event.card_id,
            operation,
        )

    @admin.display(description=_("what it did"), ordering="outcome")
    def outcome_badge(self, event: OperationEvent) -> str:
        markers = timeline_entries([event])[0].markers
        if not markers:
            return ""
        found = labels.label("outcome", event.outcome)
        return admin_display.badge(
            markers[0].label, markers[0].tone, title=event.validation_error or found.help
        )

    @admin.display(description=_("item as received"))
    def masked_payload(self, event: OperationEvent) -> str:
        return PERSONAL_MASK

    @admin.display(description=_("item as received"))
    def raw_payload(self, event: OperationEvent) -> str:
        return format_html(
            '<pre class="bo-json">{}</pre>',
            json.dumps(event.payload, indent=2, sort_keys=True, ensure_ascii=False),
        )


@admin.register(RefusalTally)
class RefusalTallyAdmin(EvidenceAdmin):
    """Calls refused at the gate (401, 403, 405, 429), counted per source, minute and reason."""

    issuer_id_in_path = "issuer_id_in_path"

    list_display = [
        "minute",
        "source",
        "status_badge",
        "error_code",
        "count",
        "issuer_id_in_path",
        "client_identity",
        "last_at",
    ]
    search_fields = ["=source", "=issuer_id_in_path"]
    search_help_text = _("Source address (IPv6: its /64) or issuer id (exact)")
    list_filter = [admin_filters.StatusCodeFilter, ("minute", DateFieldListFilter)]

    # The refused call's page: the answer and reason first, then who called.
    fields = [
        "status_badge",
        "error_code",
        "error",
        "count",
        "minute_detail",
        "first_call",
        "last_call",
        "source",
        "issuer_id_in_path",
        "client_identity",
        "correlation_id",
    ]

    @admin.display(description=_("answer"), ordering="status_code")
    def status_badge(self, tally: RefusalTally) -> str:
        return admin_display.badge(
            _("%(status)s refused") % {"status": tally.status_code}, "danger"
        )

    @admin.display(description=_("minute"))
    def minute_detail(self, tally: RefusalTally) -> str:
        return admin_display.when(tally.minute, relative=False)

    @admin.display(description=_("first call"))
    def first_call(self, tally: RefusalTally) -> str:
        return admin_display.when(tally.first_at)

    @admin.display(description=_("last call"))
    def last_call(self, tally: RefusalTally) -> str:
        return admin_display.when(tally.last_at)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(EvidenceAdmin):
    """Each POST D1 made (a "D1 message"), or each answer the portal fetched from D1."""

    issuer_path = "issuer"
    issuer_id_in_path = "issuer_id_in_path"

    # The answer and D1's error code first: they are why someone opens this list.
    list_display = [
        "received",
        "status_badge",
        "error_column",
        "issuer_column",
        "source_label",
        "items",
        "correlation_column",
    ]
    search_fields = ["=correlation_id", "=issuer_id_in_path"]
    search_help_text = _("Correlation id or issuer id (exact)")
    list_filter = [
        admin_filters.RefusedFilter,
        admin_filters.StatusCodeFilter,
        admin_filters.DuplicatesFilter,
        admin_filters.SourceFilter,
        ("received_at", admin_filters.DateRangeFilter),
    ]
    exclude = ["body"]

    def changelist_view(self, request, extra_context=None):
        refused = request.GET.get("refused") == "yes"
        title = _("Refused D1 messages") if refused else _("D1 messages")
        extra_context = {"title": title, **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("received"), ordering="received_at")
    def received(self, delivery: NotificationDelivery) -> str:
        return admin_display.when(delivery.received_at)

    @admin.display(description=_("issuer"), ordering="issuer_id_in_path")
    def issuer_column(self, delivery: NotificationDelivery) -> str:
        return delivery.issuer_id_in_path

    @admin.display(description=_("items"), ordering="item_count")
    def items(self, delivery: NotificationDelivery) -> str:
        return format_html(
            '{}<span class="bo-subtle block bo-nowrap">{}</span>',
            delivery.item_count,
            _("%(new)s new · %(repeated)s repeated · %(refused)s refused")
            % {
                "new": delivery.new_count,
                "repeated": delivery.duplicate_count,
                "refused": delivery.rejected_count,
            },
        )

    @admin.display(description=_("D1 error"), ordering="error_code")
    def error_column(self, delivery: NotificationDelivery) -> str:
        if not delivery.error_code and not delivery.error:
            return "—"
        return format_html(
            '<code class="bo-truncate" title="{}">{}</code>',
            delivery.error or delivery.error_code,
            delivery.error_code or delivery.error,
        )

    @admin.display(description=_("came from"), ordering="source")
    def source_label(self, delivery: NotificationDelivery) -> str:
        found = labels.label("source", delivery.source)
        return format_html('<span title="{}">{}</span>', found.help, found.text)

    @admin.display(description=_("correlation id"), ordering="correlation_id")
    def correlation_column(self, delivery: NotificationDelivery) -> str:
        if not delivery.correlation_id:
            return "—"
        return format_html(
            '<span class="bo-truncate bo-subtle" title="{}">{}</span>',
            delivery.correlation_id,
            delivery.correlation_id,
        )

    def get_readonly_fields(self, request, obj=None):
        return ["refused_body" if can_see_personal(request.user) else "masked_body"]

    # The message's page: the portal's answer and D1's error first, then the counts and caller.
    detail_fields = [
        "received",
        "status_badge",
        "error_code",
        "error",
        "issuer",
        "issuer_id_in_path",
        "source_detail",
        "item_count",
        "new_count",
        "duplicate_count",
        "rejected_count",
        "correlation_id",
        "client_identity",
        "remote_addr",
        "content_type",
        "byte_size",
    ]

    def get_fields(self, request, obj=None):
        return [*self.detail_fields, *self.get_readonly_fields(request, obj)]

    @admin.display(description=_("came from"))
    def source_detail(self, delivery: NotificationDelivery) -> str:
        return admin_display.coded("source", delivery.source)

    @admin.display(description=_("refused body (as received, capped)"))
    def masked_body(self, delivery: NotificationDelivery) -> str:
        if not delivery.body:
            return "—"
        return PERSONAL_MASK + (" (cut short)" if delivery.body_truncated else "")

    @admin.display(description=_("answer"), ordering="status_code")
    def status_badge(self, delivery: NotificationDelivery) -> str:
        if delivery.status_code >= 400:
            return admin_display.badge(
                _("%(status)s refused") % {"status": delivery.status_code}, "danger"
            )
        if delivery.rejected_count:
            return admin_display.badge(
                _("%(status)s partly refused") % {"status": delivery.status_code}, "warning"
            )
        return admin_display.badge(
            _("%(status)s accepted") % {"status": delivery.status_code}, "success"
        )

    @admin.display(description=_("refused body (as received, capped)"))
    def refused_body(self, delivery: NotificationDelivery) -> str:
        if not delivery.body:
            return "—"
        return format_html(
            '<pre class="bo-json">{}</pre>{}',
            delivery.body,
            " (cut short: only the start of the body is kept)" if delivery.body_truncated else "",
        )
