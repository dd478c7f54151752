"""The orders list and the order page: queues, search, the timeline and the operators' actions.

Card orders are derived state: they are viewed, never edited; operators act on them through
services (reconcile now, replay, acknowledge). Lists never count a whole table.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from tracking.admin import display as admin_display
from tracking.admin import filters as admin_filters
from tracking.admin import insight as admin_insight_columns
from tracking.admin import issuer_side as admin_issuer
from tracking.admin import text_filters
from tracking.admin.base import PortalModelAdmin
from tracking.admin.order_export import OrderExportMixin
from tracking.admin.order_page import (
    order_page_context,
    pending_key,
    reconcile_pending,
)
from tracking.admin.reconcile import reconcile_now_action
from tracking.admin.security import (
    EvidenceAdminMixin,
    OperatorPermissionsMixin,
    require_permission,
)
from tracking.domain import labels
from tracking.domain.masking import can_see_personal, personal_fields
from tracking.models import (
    CardOrder,
    Issuer,
    OrderAcknowledgement,
    ReconcileAttempt,
)
from tracking.selectors import order_queues, order_search
from tracking.selectors.order_page import acknowledgement_covers, order_page, reconcile_attempts
from tracking.selectors.order_representation import awaiting_first_event
from tracking.services import order_actions
from tracking.services.audit import Actor
from tracking.services.d1_asks import D1AskRefused
from tracking.services.issuer_grants import issuers_visible_to
from tracking.services.reconcile import orders_reconcile_now

# ---------------------------------------------------------------------------- orders


@admin.register(CardOrder)
class CardOrderAdmin(
    OrderExportMixin, OperatorPermissionsMixin, EvidenceAdminMixin, PortalModelAdmin
):
    """Orders are derived state: viewed, never edited; operators act through services."""

    issuer_path = "issuer"

    # Why the row is listed (flags, D1's error) right after the card; optional columns last.
    # To fit 1366 px, the superseded and pull & change badges sit under the production status.
    list_display = [
        "order_link",
        "flags",
        "production",
        "stage_time",
        "shipment_column",
        "last_update",
        "predicted_ship",
        "issuer_code",
    ]
    list_display_links = None
    list_select_related = ["issuer", "prediction", "assignee"]
    list_per_page = settings.ADMIN_LIST_PER_PAGE
    # Declared for the search box; `get_search_results` decides how each term is matched.
    search_fields = ["=card_id", "=operation_id", "=issuer_request_id", "=tracking_number"]
    search_help_text = _(
        "Card id, operation id, request id, tracking number (or its last 4 characters), "
        "or part of a card id, request id or file name"
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
        admin_filters.OrderChangeFilter,
        admin_filters.HasErrorFilter,
        admin_filters.AssigneeFilter,
        text_filters.CardIdContainsFilter,
        text_filters.InputFileFilter,
        ("first_event_at", admin_filters.DateRangeFilter),
        ("updated_at", admin_filters.DateRangeFilter),
        ("due_date", admin_filters.DateRangeFilter),
    ]
    list_before_template = "admin/tracking/cardorder/list_toolbar.html"
    list_fullwidth = True
    actions = [reconcile_now_action, "take_action", "release_action", "acknowledge_action"]

    # ------------------------------------------------------------------ list

    def get_ordering(self, request):
        queue = order_queues.QUEUES.get(request.GET.get("queue", ""))
        if queue and queue.ordering:
            return list(queue.ordering)
        return super().get_ordering(request)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.GET.get("queue", "") in TRIAGE_QUEUES:
            latest = OrderAcknowledgement.objects.filter(order=OuterRef("pk")).order_by(
                "-created_at", "-id"
            )
            queryset = queryset.annotate(
                acknowledged_by=Subquery(latest.values("user__username")[:1]),
                acknowledged_at=Subquery(latest.values("created_at")[:1]),
            )
        return queryset

    @admin.display(description=_("taken by / acknowledged by"))
    def triage(self, order: CardOrder) -> str:
        taken = order.assignee.get_username() if order.assignee_id else ""
        acknowledged = getattr(order, "acknowledged_by", None)
        acknowledged_at = getattr(order, "acknowledged_at", None)
        acknowledged_html = (
            format_html(
                '<span class="bo-subtle block bo-acknowledged-by" title="{}">{} {}</span>',
                _("Acknowledged by"),
                "✓",
                acknowledged,
            )
            if acknowledged and acknowledgement_covers(order, acknowledged_at)
            else ""
        )
        return format_html(
            '<span class="bo-assignee" data-assignee="{}">{}</span>{}',
            taken,
            taken or "—",
            acknowledged_html,
        )

    # ------------------------------------------------------------------ triage actions

    @admin.action(description=_("Take it (assign to me)"), permissions=["acknowledge"])
    def take_action(self, request, queryset):
        require_permission(request, "tracking.acknowledge_cardorder")
        taken = order_actions.orders_assign(
            order_ids=list(queryset.values_list("pk", flat=True)),
            actor=Actor.of_request(request),
            assignee=request.user,
        )
        self.message_user(
            request,
            ngettext("You took %(count)d order.", "You took %(count)d orders.", taken)
            % {"count": taken},
            messages.SUCCESS,
        )

    @admin.action(description=_("Release (assign to nobody)"), permissions=["acknowledge"])
    def release_action(self, request, queryset):
        require_permission(request, "tracking.acknowledge_cardorder")
        released = order_actions.orders_assign(
            order_ids=list(queryset.values_list("pk", flat=True)),
            actor=Actor.of_request(request),
            assignee=None,
        )
        self.message_user(
            request,
            ngettext("Released %(count)d order.", "Released %(count)d orders.", released)
            % {"count": released},
            messages.SUCCESS,
        )

    @admin.action(description=_("Acknowledge with one note…"), permissions=["acknowledge"])
    def acknowledge_action(self, request, queryset):
        """Ask for the note on an intermediate page, then acknowledge every selected order."""
        require_permission(request, "tracking.acknowledge_cardorder")
        form = BulkAcknowledgeForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            count = order_actions.orders_acknowledge(
                order_ids=list(queryset.values_list("pk", flat=True)),
                actor=Actor.of_request(request),
                note=form.cleaned_data["note"],
            )
            self.message_user(
                request,
                ngettext(
                    "Acknowledged %(count)d exception with one note.",
                    "Acknowledged %(count)d exceptions with one note.",
                    count,
                )
                % {"count": count},
                messages.SUCCESS,
            )
            return None
        orders = list(
            queryset.select_related(None).only("pk", "card_id", "operation_id")[
                : BULK_ACKNOWLEDGE_LIMIT + 1
            ]
        )
        if len(orders) > BULK_ACKNOWLEDGE_LIMIT:
            self.message_user(
                request,
                _("Select at most %(limit)d orders to acknowledge at once.")
                % {"limit": BULK_ACKNOWLEDGE_LIMIT},
                messages.ERROR,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Acknowledge exceptions with one note"),
            "opts": self.opts,
            "form": form,
            "orders": orders,
            "action": "acknowledge_action",
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "back_url": request.get_full_path(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tracking/cardorder/acknowledge_bulk.html", context)

    def get_search_results(self, request, queryset, search_term):
        found, search_path = order_search.orders_search(
            queryset=queryset,
            term=search_term,
            id_fields=self._search_id_fields(request),
            has_exact_match=getattr(request, "order_has_exact_match", None),
        )
        request.order_search_path = search_path
        return found, False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        term = request.GET.get(SEARCH_VAR, "")
        if term and request.method == "GET":
            # An id that designates exactly one order opens it: "where is this card?"
            order_ids = order_search.order_ids_for_exact_match(
                queryset=self.get_queryset(request),
                term=term,
                id_fields=self._search_id_fields(request),
            )
            if len(order_ids) == 1:
                return HttpResponseRedirect(
                    reverse("admin:tracking_cardorder_change", args=[order_ids[0]])
                )
            # The search below need not ask the id indexes again.
            request.order_has_exact_match = bool(order_ids)
        queue = request.GET.get("queue", "")
        shown = order_queues.QUEUES.get(queue)
        title, description = (shown.title, shown.description) if shown else (_("Card orders"), "")
        extra_context = {
            "search_explained": (
                _(
                    "The search compared it, ignoring case, with whole card ids, operation ids, "
                    "issuer request ids and tracking numbers, then with the end of tracking "
                    "numbers, then looked for it inside card ids, issuer request ids and input "
                    "file names."
                )
                if self._search_id_fields(request) == order_search.ID_FIELDS
                else _(
                    "The search compared it, ignoring case, with whole card ids, operation ids "
                    "and issuer request ids, then looked for it inside card ids, issuer request "
                    "ids and input file names."
                )
            ),
            "matching_files": admin_insight_columns.matching_files(term, user=request.user),
            "title": title,
            "subtitle": None,
            "queue": queue,
            "queue_description": description,
            "queue_tabs": [q for q in order_queues.QUEUES.values() if q.tab],
            **(extra_context or {}),
        }
        response = super().changelist_view(request, extra_context)
        # The search ran while the list was built: say which path found the rows.
        search_path = getattr(request, "order_search_path", order_search.SearchPath.NONE)
        if getattr(response, "context_data", None) is not None:
            response.context_data["search_matched"] = order_search.MATCHED.get(search_path, "")
            response.context_data["search_path"] = search_path
        return response

    def _search_id_fields(self, request) -> tuple[str, ...]:
        # Viewers may not search a personal field (a match would confirm a guessed value).
        if can_see_personal(request.user):
            return order_search.ID_FIELDS
        personal = personal_fields(CardOrder)
        return tuple(name for name in order_search.ID_FIELDS if name not in personal)

    @admin.display(description=_("card / operation"), ordering="card_id")
    def order_link(self, order: CardOrder) -> str:
        url = reverse("admin:tracking_cardorder_change", args=[order.pk])
        return format_html(
            '<a class="bo-link font-semibold bo-id" href="{}" title="{}">{}</a>'
            '<span class="bo-subtle bo-id block" title="Operation id {}">{}</span>',
            url,
            order.card_id,
            order.card_id,
            order.operation_id,
            order.operation_id,
        )

    @admin.display(description=_("issuer"), ordering="issuer__issuer_id")
    def issuer_code(self, order: CardOrder) -> str:
        # Long issuer ids are cut to fit 1366 px; the full id and the name show on hover.
        return format_html(
            '<span class="bo-truncate bo-issuer" title="{} ({})">{}</span>',
            order.issuer.issuer_id,
            order.issuer.name,
            order.issuer.issuer_id,
        )

    @admin.display(description=_("production"), ordering="production_rank")
    def production(self, order: CardOrder) -> str:
        if awaiting_first_event(order):
            return format_html(
                "{}{}", admin_issuer.registered_badge(order), admin_issuer.change_badge(order)
            )
        return format_html(
            '{}<span class="bo-subtle block" title="{}">{}</span>{}{}',
            admin_display.production_badge(order.production_status, inline=True),
            _("Operation status"),
            labels.label_text("operation_status", order.operation_status)
            if order.operation_status
            else "",
            admin_issuer.superseded_badge(order),
            admin_issuer.change_badge(order),
        )

    def get_list_display(self, request):
        names = list(super().get_list_display(request))
        granted = issuers_visible_to(request.user, Issuer.objects.filter(is_active=True))
        if len(granted.values_list("pk", flat=True)[:2]) < 2:
            # One issuer: its column would repeat the same code on every row.
            names.remove("issuer_code")
        if not can_see_personal(request.user):
            # Viewers: the tracking number and link are personal (PERSONAL_FIELDS).
            names = ["shipment_column_masked" if n == "shipment_column" else n for n in names]
        if request.GET.get("queue", "") in TRIAGE_QUEUES:
            # Triage lists say who took each exception and, once handled, who acknowledged it.
            names.insert(names.index("flags") + 1, "triage")
        return names

    @admin.display(description=_("shipment / carrier"), ordering="shipment_status")
    def shipment_column(self, order: CardOrder) -> str:
        return admin_display.shipment_summary(order)

    @admin.display(description=_("shipment / carrier"), ordering="shipment_status")
    def shipment_column_masked(self, order: CardOrder) -> str:
        return admin_display.shipment_summary(order, personal=False)

    @admin.display(description=_("time in stage"), ordering="stage_entered_at")
    def stage_time(self, order: CardOrder) -> str:
        return admin_display.time_in_stage(order, now=timezone.now())

    @admin.display(description=_("last update"), ordering="updated_at")
    def last_update(self, order: CardOrder) -> str:
        return admin_display.when(order.updated_at)

    @admin.display(description=_("predicted ship"), ordering="predicted_ship_date")
    def predicted_ship(self, order: CardOrder) -> str:
        return admin_insight_columns.predicted_ship_html(order)

    @admin.display(description=_("flags"))
    def flags(self, order: CardOrder) -> str:
        return admin_display.flags_html(order)

    # ------------------------------------------------------------------ urls

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("export.csv", wrap(self.export_view), name="{}_{}_export".format(*info)),
            path(
                "export.xlsx", wrap(self.export_xlsx_view), name="{}_{}_export_xlsx".format(*info)
            ),
            *admin_issuer.order_urls(self),
            path(
                "<int:object_id>/reconcile/",
                wrap(self.reconcile_view),
                name="{}_{}_reconcile".format(*info),
            ),
            path(
                "<int:object_id>/reconcile/status/",
                wrap(self.reconcile_status_view),
                name="{}_{}_reconcile_status".format(*info),
            ),
            path(
                "<int:object_id>/replay/",
                wrap(self.replay_view),
                name="{}_{}_replay".format(*info),
            ),
            path(
                "<int:object_id>/take/",
                wrap(self.take_view),
                name="{}_{}_take".format(*info),
            ),
            path(
                "<int:object_id>/acknowledge/",
                wrap(self.acknowledge_view),
                name="{}_{}_acknowledge".format(*info),
            ),
            *super().get_urls(),
        ]

    # ------------------------------------------------------------------ the order page

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method != "GET":
            raise PermissionDenied
        order = self.granted_object_or_404(
            request, object_id, self.get_queryset(request).select_related("issuer", "assignee")
        )
        if not self.has_view_permission(request, order):
            raise PermissionDenied
        page = order_page(order, now=timezone.now(), orders=self.get_queryset(request))
        context = {
            **self.admin_site.each_context(request),
            **order_page_context(self, request, page),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tracking/cardorder/order_page.html", context)

    def reconcile_status_view(self, request, object_id):
        """Whether an "Ask D1 now" still waits for its answer, and the newest attempt's id.

        The order page polls this while an attempt is pending and reloads when it changes.
        """
        order = self.granted_object_or_404(request, object_id)
        if not self.has_view_permission(request, order):
            raise PermissionDenied
        attempts = reconcile_attempts(order)[:1]
        return JsonResponse(
            {
                "pending": reconcile_pending(request, order, attempts),
                "latest_attempt": attempts[0].pk if attempts else None,
            }
        )

    def _order_or_404(self, request, object_id) -> CardOrder:
        # An order of an issuer outside the grant answers 404, as a missing one does.
        return self.granted_object_or_404(
            request, object_id, CardOrder.objects.only("pk", "card_id", "operation_id")
        )

    def _back_to(self, object_id) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:tracking_cardorder_change", args=[object_id]))

    def reconcile_view(self, request, object_id):
        return require_POST(self._reconcile)(request, object_id)

    def _reconcile(self, request, object_id):
        require_permission(request, "tracking.reconcile_cardorder")
        order = self._order_or_404(request, object_id)
        asked_at = timezone.now()
        try:
            orders_reconcile_now(order_ids=[order.pk], actor=Actor.of_request(request))
        except D1AskRefused as exc:
            messages.error(request, str(exc))
            return self._back_to(order.pk)
        request.session[pending_key(order.pk)] = asked_at.isoformat()
        # Queued when the block above committed; a worker that runs tasks at once (or the
        # tests, eager) has already answered, and then the outcome is worth saying.
        attempt = (
            ReconcileAttempt.objects.filter(order=order, started_at__gte=asked_at)
            .order_by("-started_at", "-pk")
            .first()
        )
        if attempt is None:
            messages.info(
                request, _("Asked D1; its answer appears on this page as soon as it arrives.")
            )
        else:
            level = messages.ERROR if attempt.outcome == "error" else messages.SUCCESS
            detail = f" ({attempt.error})" if attempt.error else ""
            outcome = labels.label("reconcile_outcome", attempt.outcome)
            messages.add_message(
                request,
                level,
                _("Asked D1 about this order: %(outcome)s%(detail)s.")
                % {"outcome": outcome.text, "detail": detail},
            )
        return self._back_to(order.pk)

    def replay_view(self, request, object_id):
        return require_POST(self._replay)(request, object_id)

    def _replay(self, request, object_id):
        require_permission(request, "tracking.replay_cardorder")
        order = self._order_or_404(request, object_id)
        result = order_actions.order_replay(order_id=order.pk, actor=Actor.of_request(request))
        if result.changed:
            changed = ", ".join(sorted(result.changed))
            messages.warning(
                request,
                _("Replayed from the stored events; changed: %(changed)s.") % {"changed": changed},
            )
        else:
            messages.success(request, _("Replayed from the stored events: the state is unchanged."))
        return self._back_to(order.pk)

    def take_view(self, request, object_id):
        return require_POST(self._take)(request, object_id)

    def _take(self, request, object_id):
        """ "Take it" on the order page: the order is yours (or nobody's, with release)."""
        require_permission(request, "tracking.acknowledge_cardorder")
        order = self._order_or_404(request, object_id)
        release = request.POST.get("release") == "1"
        order_actions.orders_assign(
            order_ids=[order.pk],
            actor=Actor.of_request(request),
            assignee=None if release else request.user,
        )
        messages.success(request, _("Released.") if release else _("You took this order."))
        return self._back_to(order.pk)

    def acknowledge_view(self, request, object_id):
        return require_POST(self._acknowledge)(request, object_id)

    def _acknowledge(self, request, object_id):
        require_permission(request, "tracking.acknowledge_cardorder")
        order = self._order_or_404(request, object_id)
        try:
            order_actions.order_acknowledge(
                order_id=order.pk,
                actor=Actor.of_request(request),
                note=request.POST.get("note", ""),
            )
        except ValueError:
            messages.error(request, _("Write a note to acknowledge the exception."))
        else:
            messages.success(
                request, _("Exception acknowledged; the order left the Exceptions list.")
            )
        return self._back_to(order.pk)


# The lists whose rows staff work one by one: who took each, who acknowledged it.
TRIAGE_QUEUES = frozenset({"exceptions", "acknowledged"})
BULK_ACKNOWLEDGE_LIMIT = 500


class BulkAcknowledgeForm(forms.Form):
    note = forms.CharField(
        label=_("Note (kept on each order)"),
        widget=forms.Textarea(attrs={"rows": 3, "id": "bulk-acknowledge-note"}),
        strip=True,
    )
