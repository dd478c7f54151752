"""Admin for reconciliation: the attempts list, an order-page inline, a "Reconcile now" action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tracking.admin_security import EvidenceAdminMixin, audited_action, base_model_admin
from tracking.models import ReconcileAttempt
from tracking.services.reconcile import orders_reconcile_now

ATTEMPT_FIELDS = [
    "started_at",
    "trigger",
    "reason",
    "outcome",
    "http_status",
    "latency_ms",
    "items_received",
    "status_before",
    "status_after",
    "error",
    "correlation_id",
    "requested_by",
]


@admin.register(ReconcileAttempt)
class ReconcileAttemptAdmin(EvidenceAdminMixin, base_model_admin()):
    """Every on-demand call, newest first; evidence, so read-only for everyone."""

    list_display = [
        "started_at",
        "order",
        "trigger",
        "reason",
        "outcome",
        "http_status",
        "latency_ms",
        "status_before",
        "status_after",
    ]
    # started_at: the dashboard links to the attempts of the last day and week.
    list_filter = [
        "outcome",
        "http_status",
        "trigger",
        "reason",
        ("started_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["order"]
    search_fields = ["=order__card_id", "=order__operation_id", "=correlation_id"]
    show_full_result_count = False
    fields = ["order", *ATTEMPT_FIELDS, "delivery"]
    readonly_fields = fields


class ReconcileAttemptInline(EvidenceAdminMixin, admin.TabularInline):
    """The order page's list of its reconcile attempts, newest first."""

    model = ReconcileAttempt
    fk_name = "order"
    extra = 0
    can_delete = False
    ordering = ["-started_at", "-id"]
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    verbose_name_plural = "reconcile attempts"


@audited_action(permission="reconcile", action="order.reconcile", description="Reconcile now")
def reconcile_now_action(modeladmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Queue a reconcile of every selected order, whatever its backoff (operators only)."""
    order_ids = list(queryset.values_list("pk", flat=True))
    orders_reconcile_now(order_ids=order_ids, user=request.user)
    modeladmin.message_user(
        request,
        f"Reconciliation queued for {len(order_ids)} order(s); each order's page lists its "
        "attempts once D1 has answered.",
        messages.SUCCESS,
    )
