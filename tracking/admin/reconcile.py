"""Admin for reconciliation: the attempts list, an order-page inline, a "Reconcile now" action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from tracking.admin import display as admin_display
from tracking.admin import filters as admin_filters
from tracking.admin.base import EvidenceAdmin
from tracking.admin.security import operator_action
from tracking.domain import labels
from tracking.domain.masking import can_see_personal
from tracking.models import ReconcileAttempt
from tracking.services.audit import Actor
from tracking.services.d1_ask_jobs import d1_ask_job_start
from tracking.services.d1_asks import D1AskRefused

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
class ReconcileAttemptAdmin(EvidenceAdmin):
    """Every on-demand call, newest first; evidence, so read-only for everyone."""

    issuer_path = "order__issuer"

    # The order and what D1 answered first; the call's figures after.
    list_display = [
        "order_column",
        "outcome_badge",
        "answer_column",
        "reason_label",
        "trigger_label",
        "http_column",
        "asked_at",
    ]
    # The card links to its order; the time opens the attempt itself.
    list_display_links = ["asked_at"]
    list_filter = [
        admin_filters.AttemptOutcomeFilter,
        admin_filters.AttemptReasonFilter,
        admin_filters.AttemptTriggerFilter,
        "http_status",
        ("started_at", admin_filters.DateRangeFilter),
    ]
    list_select_related = ["order"]
    search_fields = ["=order__card_id", "=order__operation_id", "=correlation_id"]
    search_help_text = _("Card id, operation id or correlation id (exact)")

    def get_list_display(self, request):
        self._personal = can_see_personal(request.user)
        return super().get_list_display(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": _("Calls to D1: every time the portal asked D1")} | (
            extra_context or {}
        )
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("card / operation"), ordering="order__card_id")
    def order_column(self, attempt: ReconcileAttempt) -> str:
        url = reverse("admin:tracking_cardorder_change", args=[attempt.order_id])
        return format_html(
            '<a class="bo-link font-semibold bo-id" href="{}" title="{}">{}</a>'
            '<span class="bo-subtle bo-id block" title="Operation id {}">{}</span>',
            url,
            attempt.order.card_id,
            attempt.order.card_id,
            attempt.order.operation_id,
            attempt.order.operation_id,
        )

    @admin.display(description=_("result"), ordering="outcome")
    def outcome_badge(self, attempt: ReconcileAttempt) -> str:
        return attempt_outcome_badge(attempt)

    @admin.display(description=_("D1's answer"))
    def answer_column(self, attempt: ReconcileAttempt) -> str:
        answer = admin_display.d1_answer(attempt.answer, personal=getattr(self, "_personal", False))
        if answer:
            return answer
        if attempt.error:
            return format_html(
                '<span class="bo-truncate bo-subtle" title="{}">{}</span>',
                attempt.error,
                attempt.error,
            )
        if attempt.status_after:
            return admin_display.production_badge(attempt.status_after, inline=True)
        return "—"

    @admin.display(description=_("why asked"), ordering="reason")
    def reason_label(self, attempt: ReconcileAttempt) -> str:
        found = labels.label("reconcile_reason", attempt.reason)
        return format_html('<span title="{}">{}</span>', found.help, found.text)

    @admin.display(description=_("asked by"), ordering="trigger")
    def trigger_label(self, attempt: ReconcileAttempt) -> str:
        found = labels.label("reconcile_trigger", attempt.trigger)
        return format_html(
            '<span title="{}">{}</span>{}',
            found.help,
            found.text,
            format_html('<span class="bo-subtle block">{}</span>', attempt.requested_by)
            if attempt.requested_by_id
            else "",
        )

    @admin.display(description=_("HTTP / time"), ordering="http_status")
    def http_column(self, attempt: ReconcileAttempt) -> str:
        return attempt_http(attempt)

    @admin.display(description=_("asked at"), ordering="started_at")
    def asked_at(self, attempt: ReconcileAttempt) -> str:
        return admin_display.when(attempt.started_at)

    # The attempt's page: D1's answer as the list shows it, codes with their labels.
    detail_fields = [
        "order",
        "asked_at",
        "trigger_detail",
        "requested_by",
        "reason_detail",
        "outcome_detail",
        "answer_placeholder",
        "http_column",
        "items_received",
        "status_before_detail",
        "status_after_detail",
        "error",
        "correlation_id",
        "delivery",
    ]

    def get_fields(self, request, obj=None):
        # Viewers get the masked answer: two methods rather than state on the shared admin.
        answer = "answer_detail" if can_see_personal(request.user) else "answer_detail_masked"
        return [answer if name == "answer_placeholder" else name for name in self.detail_fields]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description=_("asked by"))
    def trigger_detail(self, attempt: ReconcileAttempt) -> str:
        return admin_display.coded("reconcile_trigger", attempt.trigger)

    @admin.display(description=_("why asked"))
    def reason_detail(self, attempt: ReconcileAttempt) -> str:
        return admin_display.coded("reconcile_reason", attempt.reason)

    @admin.display(description=_("result"))
    def outcome_detail(self, attempt: ReconcileAttempt) -> str:
        return admin_display.coded(
            "reconcile_outcome",
            attempt.outcome,
            tone=_OUTCOME_TONES.get(attempt.outcome, "neutral"),
        )

    @admin.display(description=_("D1's answer"))
    def answer_detail(self, attempt: ReconcileAttempt) -> str:
        return admin_display.d1_answer(attempt.answer, personal=True) or _no_answer(attempt)

    @admin.display(description=_("D1's answer"))
    def answer_detail_masked(self, attempt: ReconcileAttempt) -> str:
        return admin_display.d1_answer(attempt.answer, personal=False) or _no_answer(attempt)

    @admin.display(description=_("production step before"))
    def status_before_detail(self, attempt: ReconcileAttempt) -> str:
        return admin_display.coded("production_status", attempt.status_before, empty="—")

    @admin.display(description=_("production step after"))
    def status_after_detail(self, attempt: ReconcileAttempt) -> str:
        return admin_display.coded("production_status", attempt.status_after, empty="—")


def _no_answer(attempt: ReconcileAttempt) -> str:
    """What the answer field says when D1 returned nothing readable."""
    if attempt.error:
        return _("No answer from D1 (see the error).")
    return _("Nothing for this order in D1's answer.")


_OUTCOME_TONES = {"changed": "success", "error": "danger", "not_found": "warning"}


def attempt_outcome_badge(attempt: ReconcileAttempt) -> str:
    found = labels.label("reconcile_outcome", attempt.outcome)
    return admin_display.badge(
        found.text, _OUTCOME_TONES.get(attempt.outcome, "neutral"), title=found.help
    )


def attempt_http(attempt: ReconcileAttempt) -> str:
    """HTTP status and latency in words: "200 OK · 84 ms", or why there was no answer."""
    status = _("no answer") if attempt.http_status is None else f"HTTP {attempt.http_status}"
    latency = f"{attempt.latency_ms} ms" if attempt.latency_ms is not None else ""
    return format_html(
        '<span class="bo-nowrap">{}</span><span class="bo-subtle block">{}</span>',
        status,
        latency,
    )


@operator_action(permission="reconcile", description=_("Ask D1 now"))
def reconcile_now_action(modeladmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Ask D1 about the selected orders (operators only): one capped, paced job, whatever the
    selection (`select_across` included), with its progress on the job's page."""
    try:
        job = d1_ask_job_start(orders=queryset, actor=Actor.of_request(request))
    except D1AskRefused as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    url = reverse("admin:tracking_d1askjob_change", args=[job.pk])
    text = _(
        "Asked D1 about %(count)s order(s), at D1's pace; each order's page shows D1's answer "
        "once it arrives, and the job shows the progress."
    ) % {"count": job.total}
    if job.selected > job.total:
        text += " " + _(
            "Only the first %(cap)s of the %(selected)s selected orders are asked at a time "
            "(D1_BULK_ASK_MAX)."
        ) % {"cap": job.total, "selected": job.selected}
    modeladmin.message_user(
        request,
        format_html('{} <a class="bo-link" href="{}">{}</a>', text, url, _("Open the job")),
        messages.WARNING if job.selected > job.total else messages.SUCCESS,
    )
