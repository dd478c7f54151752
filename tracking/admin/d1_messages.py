"""What D1 sent: every delivery, every distinct item, and the refused calls; read-only."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin import DateFieldListFilter
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from tracking.admin import display as admin_display
from tracking.admin import filters as admin_filters
from tracking.admin.base import EvidenceAdmin
from tracking.admin.timeline import timeline_entries
from tracking.domain import labels
from tracking.domain.masking import PERSONAL_MASK, can_see_personal
from tracking.models import (
    CardOrder,
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
        body = "refused_body" if can_see_personal(request.user) else "masked_body"
        return ["orders_touched", body]

    @admin.display(description=_("orders it touched"))
    def orders_touched(self, delivery: NotificationDelivery) -> str:
        orders = delivery_orders(delivery)
        if not orders:
            return "—"
        links = format_html_join(
            " ",
            '<a class="bo-link bo-id bo-touched-order" href="{}" data-order="{}">{}</a>',
            (
                (reverse("admin:tracking_cardorder_change", args=[pk]), pk, card_id)
                for pk, card_id in orders[:ORDERS_SHOWN]
            ),
        )
        more = len(orders) - ORDERS_SHOWN
        if more > 0:
            return format_html('{} <span class="bo-subtle">{}</span>', links, f"+{more}")
        return links

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

    @admin.display(description=_("body as received (capped)"))
    def masked_body(self, delivery: NotificationDelivery) -> str:
        if not delivery.body:
            return "—"
        masked = viewer_body(delivery.body)
        if masked is None:
            return PERSONAL_MASK + (" (cut short)" if delivery.body_truncated else "")
        return format_html('<pre class="bo-json" id="delivery-body">{}</pre>', masked)

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

    @admin.display(description=_("body as received (capped)"))
    def refused_body(self, delivery: NotificationDelivery) -> str:
        if not delivery.body:
            return "—"
        return format_html(
            '<pre class="bo-json" id="delivery-body">{}</pre>{}',
            # Refused bodies exactly as kept; accepted ones (kept compact) indented.
            delivery.body if delivery.status_code >= 400 else readable_body(delivery.body),
            _(" (cut short: only the start of the body is kept)")
            if delivery.body_truncated
            else "",
        )


ORDERS_SHOWN = 200


def readable_body(body: str) -> str:
    """The body indented when it is JSON (accepted bodies are kept compact), else as kept."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def delivery_orders(delivery: NotificationDelivery) -> list[tuple[int, str]]:
    """(pk, card id) of each order the message named, in the body's order.

    From the kept body (every item, duplicates too), else from the items it brought first.
    """
    pairs = _body_pairs(delivery.body)
    if pairs and delivery.issuer_id:
        wanted = Q()
        for card_id, operation_id in pairs[: ORDERS_SHOWN * 2]:
            wanted |= Q(card_id=card_id, operation_id=operation_id)
        found = {
            (card_id, operation_id): pk
            for pk, card_id, operation_id in CardOrder.objects.filter(
                wanted, issuer_id=delivery.issuer_id
            ).values_list("pk", "card_id", "operation_id")
        }
        ordered = [(found[pair], pair[0]) for pair in dict.fromkeys(pairs) if pair in found]
        if ordered:
            return ordered
    return list(
        CardOrder.objects.filter(events__delivery=delivery)
        .distinct()
        .order_by("pk")
        .values_list("pk", "card_id")[: ORDERS_SHOWN + 1]
    )


def _body_pairs(body: str) -> list[tuple[str, str]]:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return []
    operations = parsed.get("operations") if isinstance(parsed, dict) else None
    if not isinstance(operations, list):
        return []
    return [
        (item["cardId"], item["operationId"])
        for item in operations
        if isinstance(item, dict)
        and isinstance(item.get("cardId"), str)
        and isinstance(item.get("operationId"), str)
    ]


def viewer_body(body: str) -> str | None:
    """The body for those who may not see personal fields, or None when it cannot be shown.

    Each item's `details.shipment` (tracking number, link, carrier message: personal fields)
    is replaced by the mask; card numbers were masked before the body was stored
    (`deliveries.kept_body`). A body that is not JSON (cut short, or refused as such) is not
    shown at all.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    operations = parsed.get("operations") if isinstance(parsed, dict) else None
    for item in operations if isinstance(operations, list) else []:
        details = item.get("details") if isinstance(item, dict) else None
        if isinstance(details, dict) and "shipment" in details:
            details["shipment"] = PERSONAL_MASK
    return json.dumps(parsed, indent=2, ensure_ascii=False)
