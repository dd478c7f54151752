"""Back-office admin: the orders list and order page, the evidence D1 sent, and the issuers.

Built on django-unfold. Events and deliveries are evidence: nobody adds, changes or deletes them.
Card orders are derived state: they are viewed, never edited; operators act on them through
services (reconcile now, replay, acknowledge). Lists never count a whole table.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import DateFieldListFilter
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin
from unfold.paginator import InfinitePaginator

from tracking import admin_display, admin_filters
from tracking import admin_insight as admin_insight_columns
from tracking.admin_reconcile import reconcile_now_action
from tracking.admin_security import (
    EvidenceAdminMixin,
    OperatorPermissionsMixin,
    require_permission,
)
from tracking.data_care import PERSONAL_MASK, can_see_personal, personal_fields
from tracking.models import (
    CardOrder,
    Issuer,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
)
from tracking.services import order_actions, order_queues, order_search
from tracking.services.audit import audit_record
from tracking.services.export import orders_csv_lines
from tracking.services.reconcile import orders_reconcile_now
from tracking.services.timeline import humanize_duration, stage_spans, timeline_entries

# queue -> (title, what is in it)
QUEUES = {
    "open": ("Open orders", "Orders not yet in a final stage (shipped, failed or cancelled)."),
    "exceptions": (
        "Exceptions",
        "Failures D1 reported, conflicting or unknown codes and D1 errors, not yet acknowledged.",
    ),
    "stuck": (
        "Stuck orders",
        "Orders in a stage for longer than its threshold (RECONCILE_STAGE_THRESHOLDS).",
    ),
    "reconcile": (
        "Orders that need reconciliation",
        "A gap, an unknown code or a conflict: the portal will ask D1 for the truth.",
    ),
    "failed": ("Orders that failed in production", "DATA_EXCEPTION or CARD_PROD_EXCEPTION."),
    "cancelled": ("Cancelled orders", "CARD_PROD_CANCELED: cancelled at the issuer's request."),
    "acknowledged": ("Acknowledged exceptions", "Exceptions staff have handled."),
    "likely_late": (
        "Likely late",
        "Open orders whose predicted ship date (p50) passes their dueDate; soonest due first.",
    ),
}
TIMELINE_LIMIT = 500


class FastListMixin:
    """No COUNT(*) of the table on a page view: pages go on while there are rows."""

    paginator = InfinitePaginator
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_disable_select_all = True
    list_filter_submit = True


class EvidenceAdmin(EvidenceAdminMixin, FastListMixin, ModelAdmin):
    """Events and deliveries are what D1 sent: nobody adds, edits or deletes them."""


# ---------------------------------------------------------------------------- issuers


@admin.register(Issuer)
class IssuerAdmin(SimpleHistoryAdmin, ModelAdmin):
    """Issuers are configuration: every edit keeps its history (and is audited)."""

    list_display = ["issuer_id", "name", "active_badge", "d1_key_id", "created_at"]
    search_fields = ["issuer_id", "name"]
    list_filter = ["is_active"]
    readonly_fields = ["created_at"]

    @admin.display(description="active", ordering="is_active")
    def active_badge(self, issuer: Issuer) -> str:
        return (
            admin_display.badge("Active", "success")
            if issuer.is_active
            else admin_display.badge("Inactive", "neutral")
        )


# ---------------------------------------------------------------------------- orders


@admin.register(CardOrder)
class CardOrderAdmin(OperatorPermissionsMixin, EvidenceAdminMixin, FastListMixin, ModelAdmin):
    """Orders are derived state: viewed, never edited; operators act through services."""

    list_display = [
        "order_link",
        "issuer_code",
        "production",
        "shipment_column",
        "stage_time",
        "last_update",
        "predicted_ship",
        "flags",
    ]
    list_display_links = None
    list_select_related = ["issuer", "prediction"]
    list_per_page = settings.ADMIN_LIST_PER_PAGE
    # Declared for the search box; `get_search_results` decides how each term is matched.
    search_fields = ["=card_id", "=operation_id", "=issuer_request_id", "=tracking_number"]
    search_help_text = (
        "Card id, operation id, issuer request id or tracking number (exact), "
        "or part of an input file name"
    )
    list_filter = [
        admin_filters.QueueFilter,
        admin_filters.IssuerFilter,
        admin_filters.ProductionStatusFilter,
        admin_filters.OperationStatusFilter,
        admin_filters.StageAgeFilter,
        admin_filters.StageEnteredFilter,
        admin_filters.CarrierFilter,
        admin_filters.ProductionSiteFilter,
        admin_filters.ReconcileReasonFilter,
        admin_filters.HasErrorFilter,
        ("first_event_at", admin_filters.DateRangeFilter),
        ("updated_at", admin_filters.DateRangeFilter),
        ("due_date", admin_filters.DateRangeFilter),
    ]
    list_before_template = "admin/tracking/cardorder/list_toolbar.html"
    list_fullwidth = True
    actions = [reconcile_now_action]

    # ------------------------------------------------------------------ list

    def get_ordering(self, request):
        if request.GET.get("queue") == "likely_late":
            return ["due_date", "prediction__p50", "pk"]
        return super().get_ordering(request)

    def get_search_results(self, request, queryset, search_term):
        found, search_path = order_search.orders_search(
            queryset=queryset,
            term=search_term,
            has_exact_match=getattr(request, "order_has_exact_match", None),
        )
        request.order_search_path = search_path
        return found, False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        term = request.GET.get(SEARCH_VAR, "")
        if term and request.method == "GET":
            # An id that designates exactly one order opens it: "where is this card?"
            order_ids = order_search.order_ids_for_exact_match(
                queryset=self.get_queryset(request), term=term
            )
            if len(order_ids) == 1:
                return HttpResponseRedirect(
                    reverse("admin:tracking_cardorder_change", args=[order_ids[0]])
                )
            # The search below need not ask the id indexes again.
            request.order_has_exact_match = bool(order_ids)
        queue = request.GET.get("queue", "")
        title, description = QUEUES.get(queue, ("Card orders", ""))
        extra_context = {
            "matching_files": admin_insight_columns.matching_files(term),
            "title": title,
            "subtitle": None,
            "queue": queue,
            "queue_description": description,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="card / operation", ordering="card_id")
    def order_link(self, order: CardOrder) -> str:
        url = reverse("admin:tracking_cardorder_change", args=[order.pk])
        return format_html(
            '<a class="bo-link font-semibold bo-nowrap" href="{}">{}</a>'
            '<span class="bo-subtle block bo-nowrap">{}</span>',
            url,
            order.card_id,
            order.operation_id,
        )

    @admin.display(description="issuer", ordering="issuer__issuer_id")
    def issuer_code(self, order: CardOrder) -> str:
        return order.issuer.issuer_id

    @admin.display(description="production", ordering="production_rank")
    def production(self, order: CardOrder) -> str:
        return format_html(
            '{}<span class="bo-subtle block">{}</span>',
            admin_display.production_badge(order.production_status),
            order.operation_status,
        )

    def get_list_display(self, request):
        names = list(super().get_list_display(request))
        if not can_see_personal(request.user):
            # Viewers: the tracking number and link are personal (PERSONAL_FIELDS).
            names = ["shipment_column_masked" if n == "shipment_column" else n for n in names]
        return names

    @admin.display(description="shipment / carrier", ordering="shipment_status")
    def shipment_column(self, order: CardOrder) -> str:
        return admin_display.shipment_summary(order)

    @admin.display(description="shipment / carrier", ordering="shipment_status")
    def shipment_column_masked(self, order: CardOrder) -> str:
        return admin_display.shipment_summary(order, personal=False)

    @admin.display(description="time in stage", ordering="stage_entered_at")
    def stage_time(self, order: CardOrder) -> str:
        return admin_display.time_in_stage(order, now=timezone.now())

    @admin.display(description="last update", ordering="updated_at")
    def last_update(self, order: CardOrder) -> str:
        local = timezone.localtime(order.updated_at)
        return format_html(
            '<time datetime="{}">{}</time><span class="bo-subtle block">{} ago</span>',
            order.updated_at.isoformat(),
            local.strftime("%Y-%m-%d %H:%M"),
            humanize_duration(timezone.now() - order.updated_at),
        )

    @admin.display(description="predicted ship", ordering="prediction__p50")
    def predicted_ship(self, order: CardOrder) -> str:
        return admin_insight_columns.predicted_ship_html(order)

    @admin.display(description="flags")
    def flags(self, order: CardOrder) -> str:
        return admin_display.flags_html(order)

    # ------------------------------------------------------------------ urls

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("export.csv", wrap(self.export_view), name="{}_{}_export".format(*info)),
            path(
                "<int:object_id>/reconcile/",
                wrap(self.reconcile_view),
                name="{}_{}_reconcile".format(*info),
            ),
            path(
                "<int:object_id>/replay/",
                wrap(self.replay_view),
                name="{}_{}_replay".format(*info),
            ),
            path(
                "<int:object_id>/acknowledge/",
                wrap(self.acknowledge_view),
                name="{}_{}_acknowledge".format(*info),
            ),
            *super().get_urls(),
        ]

    # ------------------------------------------------------------------ export

    def export_view(self, request: HttpRequest):
        """The current list (its filters, queue and search) as CSV, streamed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        queryset = changelist.get_queryset(request)
        masked = set() if can_see_personal(request.user) else set(personal_fields(CardOrder))
        lines = orders_csv_lines(
            queryset=queryset, chunk_size=settings.ADMIN_EXPORT_CHUNK_SIZE, masked=masked
        )
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="card-orders-{stamp}.csv"'
        return response

    # ------------------------------------------------------------------ the order page

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method != "GET":
            raise PermissionDenied
        order = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_permission(request, order):
            raise PermissionDenied
        now = timezone.now()
        personal = can_see_personal(request.user)
        events = list(order.timeline()[: TIMELINE_LIMIT + 1])
        context = {
            **self.admin_site.each_context(request),
            "title": f"Card {order.card_id}",
            "subtitle": f"Operation {order.operation_id}",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": order,
            "order": order,
            "now": now,
            "production": admin_display.production_badge(order.production_status),
            "operation_tone": admin_display.operation_tone(order.operation_status),
            "shipment": admin_display.shipment_badge(order.shipment_status),
            "carrier": admin_display.carrier_link(order, personal=personal),
            "personal": personal,
            "personal_mask": PERSONAL_MASK,
            "time_in_stage": admin_display.time_in_stage(order, now=now),
            "flags": admin_display.order_flags(order),
            "timeline": timeline_entries(events[:TIMELINE_LIMIT]),
            "timeline_truncated": len(events) > TIMELINE_LIMIT,
            "stages": stage_spans(order, now=now),
            "reconcile_attempts": _reconcile_attempts(order),
            "acknowledgements": list(order.acknowledgements.select_related("user")[:20]),
            "exception": order_queues.is_exception(order),
            "can_reconcile": self.has_reconcile_permission(request),
            "can_replay": self.has_replay_permission(request),
            "can_acknowledge": self.has_acknowledge_permission(request),
            **admin_insight_columns.order_insight_context(order),
            "shipment_json": json.dumps(order.shipment, indent=2, sort_keys=True)
            if order.shipment
            else "",
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tracking/cardorder/order_page.html", context)

    def _order_or_404(self, object_id) -> CardOrder:
        return get_object_or_404(
            CardOrder.objects.only("pk", "card_id", "operation_id"), pk=object_id
        )

    def _back_to(self, object_id) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:tracking_cardorder_change", args=[object_id]))

    def reconcile_view(self, request, object_id):
        return require_POST(self._reconcile)(request, object_id)

    def _reconcile(self, request, object_id):
        require_permission(request, "tracking.reconcile_cardorder")
        order = self._order_or_404(object_id)
        asked_at = timezone.now()
        with transaction.atomic():
            orders_reconcile_now(order_ids=[order.pk], user=request.user)
            audit_record(user=request.user, action="order.reconcile", target=order, request=request)
        # Queued when the block above committed; a worker that runs tasks at once (or the
        # tests, eager) has already answered, and then the outcome is worth saying.
        attempt = (
            ReconcileAttempt.objects.filter(order=order, started_at__gte=asked_at)
            .order_by("-started_at", "-pk")
            .first()
        )
        if attempt is None:
            messages.info(
                request, "Reconciliation queued; the attempt appears on this page once D1 answers."
            )
        else:
            level = messages.ERROR if attempt.outcome == "error" else messages.SUCCESS
            detail = f" ({attempt.error})" if attempt.error else ""
            messages.add_message(
                request, level, f"Asked D1 for this order: {attempt.get_outcome_display()}{detail}."
            )
        return self._back_to(order.pk)

    def replay_view(self, request, object_id):
        return require_POST(self._replay)(request, object_id)

    def _replay(self, request, object_id):
        require_permission(request, "tracking.replay_cardorder")
        order = self._order_or_404(object_id)
        with transaction.atomic():
            result = order_actions.order_replay(order_id=order.pk, user=request.user)
            audit_record(
                user=request.user,
                action="order.replay",
                target=order,
                request=request,
                details={"changed": sorted(result.changed)},
            )
        if result.changed:
            changed = ", ".join(sorted(result.changed))
            messages.warning(request, f"Replayed from the stored events; changed: {changed}.")
        else:
            messages.success(request, "Replayed from the stored events: the state is unchanged.")
        return self._back_to(order.pk)

    def acknowledge_view(self, request, object_id):
        return require_POST(self._acknowledge)(request, object_id)

    def _acknowledge(self, request, object_id):
        require_permission(request, "tracking.acknowledge_cardorder")
        order = self._order_or_404(object_id)
        try:
            with transaction.atomic():
                acknowledgement = order_actions.order_acknowledge(
                    order_id=order.pk, user=request.user, note=request.POST.get("note", "")
                )
                audit_record(
                    user=request.user,
                    action="order.acknowledge",
                    target=order,
                    request=request,
                    details={"acknowledgement": acknowledgement.pk},
                )
        except ValueError:
            messages.error(request, "Write a note to acknowledge the exception.")
        else:
            messages.success(request, "Exception acknowledged; the order left the Exceptions list.")
        return self._back_to(order.pk)


def _reconcile_attempts(order: CardOrder) -> list:
    return list(
        ReconcileAttempt.objects.filter(order=order)
        .select_related("requested_by")
        .order_by("-started_at", "-pk")[:20]
    )


# ---------------------------------------------------------------------------- evidence


@admin.register(OperationEvent)
class OperationEventAdmin(EvidenceAdmin):
    list_display = [
        "first_received_at",
        "card_link",
        "operation",
        "production_status",
        "outcome_badge",
        "source",
        "times_received",
    ]
    list_select_related = ["issuer"]
    # Newest first by primary key: ids grow with time and need no extra index.
    ordering = ["-id"]
    search_fields = ["=card_id", "=operation_id", "=fingerprint"]
    search_help_text = "Card id, operation id or fingerprint (exact)"
    list_filter = [
        "outcome",
        "source",
        ("first_received_at", DateFieldListFilter),
        admin_filters.IssuerFilter,
    ]
    exclude = ["payload"]

    def get_readonly_fields(self, request, obj=None):
        personal = can_see_personal(request.user)
        return ["raw_payload" if personal else "masked_payload"]

    @admin.display(description="card", ordering="card_id")
    def card_link(self, event: OperationEvent) -> str:
        if event.order_id is None:
            return event.card_id
        url = reverse("admin:tracking_cardorder_change", args=[event.order_id])
        return format_html('<a class="bo-link" href="{}">{}</a>', url, event.card_id)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, event: OperationEvent) -> str:
        markers = timeline_entries([event])[0].markers
        return admin_display.badge(markers[0].label, markers[0].tone) if markers else ""

    @admin.display(description="payload")
    def masked_payload(self, event: OperationEvent) -> str:
        return PERSONAL_MASK

    @admin.display(description="payload")
    def raw_payload(self, event: OperationEvent) -> str:
        return format_html(
            '<pre class="bo-json">{}</pre>',
            json.dumps(event.payload, indent=2, sort_keys=True, ensure_ascii=False),
        )


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(EvidenceAdmin):
    list_display = [
        "received_at",
        "issuer_id_in_path",
        "source",
        "status_badge",
        "item_count",
        "new_count",
        "duplicate_count",
        "rejected_count",
        "error_code",
        "correlation_id",
    ]
    search_fields = ["=correlation_id", "=issuer_id_in_path"]
    search_help_text = "Correlation id or issuer id (exact)"
    list_filter = [
        admin_filters.RefusedFilter,
        admin_filters.StatusCodeFilter,
        admin_filters.DuplicatesFilter,
        "source",
        ("received_at", DateFieldListFilter),
    ]
    exclude = ["body"]

    def get_readonly_fields(self, request, obj=None):
        return ["refused_body" if can_see_personal(request.user) else "masked_body"]

    @admin.display(description="refused body (as received, capped)")
    def masked_body(self, delivery: NotificationDelivery) -> str:
        return PERSONAL_MASK if delivery.body else "—"

    @admin.display(description="answer", ordering="status_code")
    def status_badge(self, delivery: NotificationDelivery) -> str:
        if delivery.status_code >= 400:
            return admin_display.badge(f"{delivery.status_code} refused", "danger")
        if delivery.rejected_count:
            return admin_display.badge(f"{delivery.status_code} partly refused", "warning")
        return admin_display.badge(f"{delivery.status_code} accepted", "success")

    @admin.display(description="refused body (as received, capped)")
    def refused_body(self, delivery: NotificationDelivery) -> str:
        if not delivery.body:
            return "—"
        return format_html(
            '<pre class="bo-json">{}</pre>{}',
            delivery.body,
            " (truncated)" if delivery.body_truncated else "",
        )
