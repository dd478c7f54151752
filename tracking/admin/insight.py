"""Back-office insight pages: production files (list and page) and the sites x stages heat-map.

The files list is the `ProductionFile` rollup (sortable by age and share finished); the file
page asks the orders live with set-based queries; the heat-map reads `StageStat`. Anyone who
may view card orders may view these pages.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from tracking.admin import display as admin_display
from tracking.admin import filters as admin_filters
from tracking.admin.base import PortalModelAdmin
from tracking.domain.labels import humanize_duration
from tracking.domain.stage_limits import stage_threshold
from tracking.domain.statuses import SHIPPED_STATUS
from tracking.insight import predictions, production_files, stage_times
from tracking.insight.refresh import last_refresh
from tracking.models import CardOrder, ProductionFile, StageSpan
from tracking.services.issuer_grants import (
    issuers_granted,
    issuers_visible_to,
    sees_every_issuer,
    visible_to,
)

ORDERS_CHANGELIST = "admin:tracking_cardorder_changelist"


def can_view_orders(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.has_perm("tracking.view_cardorder")


def file_orders_url(*, issuer_id: int, name: str, **params: str) -> str:
    """The orders list narrowed to one file (and optional queue or filters)."""
    query = {"issuer": issuer_id, "input_file_name": name, **params}
    return f"{reverse(ORDERS_CHANGELIST)}?{urlencode(query)}"


def file_page_url(*, issuer_id: int, name: str) -> str:
    query = urlencode({"issuer": issuer_id, "name": name})
    return f"{reverse('admin:tracking_productionfile_file')}?{query}"


def stage_bar_html(figures: production_files.FileFigures) -> str:
    """A stacked bar of the file's stages, each segment labelled, and the same as text."""
    segments = format_html_join(
        "",
        '<span class="bo-stagebar-seg bo-stage-{}" style="width:{}%" title="{}: {}"></span>',
        (
            (s.status.lower().replace("_", "-"), f"{s.percent:.2f}", s.status, s.count)
            for s in figures.bar()
        ),
    )
    text = format_html_join(
        ", ",
        "{} {}",
        ((s.status.replace("CARD_", "").replace("_", " ").lower(), s.count) for s in figures.bar()),
    )
    return format_html(
        '<span class="bo-stagebar" role="img" aria-label="{}">{}</span>'
        '<span class="bo-subtle block">{}</span>',
        text,
        segments,
        text,
    )


class HasExceptionsFilter(admin_filters.ChoiceFilter):
    title = _("exceptions")
    parameter_name = "has_exceptions"

    def lookups(self, request, model_admin):
        return [("yes", _("With exceptions")), ("no", _("Without exceptions"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(exceptions__gt=0)
        if self.value() == "no":
            return queryset.filter(exceptions=0)
        return queryset


class FinishedFilter(admin_filters.ChoiceFilter):
    title = _("progress")
    parameter_name = "progress"

    def lookups(self, request, model_admin):
        return [("open", _("Still has open orders")), ("done", _("Every order final"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(share_finished__lt=100)
        if self.value() == "done":
            return queryset.filter(share_finished__gte=100)
        return queryset


@admin.register(ProductionFile)
class ProductionFileAdmin(PortalModelAdmin):
    """The files list: one row per (issuer, inputFileName) with its figures."""

    issuer_path = "issuer"

    list_display = [
        "file_link",
        "issuer_code",
        "orders",
        "stages",
        "finished_share",
        "shipped_share",
        "exceptions_count",
        "cancelled",
        "first_event_at",
        "last_event_at",
        "predicted",
    ]
    list_display_links = None
    list_select_related = ["issuer"]
    search_fields = ["name"]
    search_help_text = _("Part of the input file name")
    list_filter = [
        admin_filters.IssuerFilter,
        HasExceptionsFilter,
        FinishedFilter,
        ("first_event_at", admin_filters.DateRangeFilter),
        ("last_event_at", admin_filters.DateRangeFilter),
    ]
    list_fullwidth = True
    list_per_page = 50
    ordering = ["-first_event_at", "-pk"]
    list_before_template = "admin/tracking/insight/files_toolbar.html"

    def has_view_permission(self, request, obj=None) -> bool:
        return can_view_orders(request)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        state = last_refresh()
        extra_context = {
            "title": _("Production files"),
            "subtitle": None,
            "refreshed_at": state.refreshed_at if state else None,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("file"), ordering="name")
    def file_link(self, file: ProductionFile) -> str:
        return format_html(
            '<a class="bo-link font-semibold bo-id" href="{}" title="{}">{}</a>',
            file_page_url(issuer_id=file.issuer_id, name=file.name),
            file.name,
            file.name,
        )

    @admin.display(description=_("issuer"), ordering="issuer__issuer_id")
    def issuer_code(self, file: ProductionFile) -> str:
        return file.issuer.issuer_id

    @admin.display(description=_("orders per stage"))
    def stages(self, file: ProductionFile) -> str:
        figures = production_files.FileFigures(orders=file.orders, stage_counts=file.stage_counts)
        return stage_bar_html(figures)

    @admin.display(description=_("finished"), ordering="share_finished")
    def finished_share(self, file: ProductionFile) -> str:
        return f"{file.share_finished:.1f} %"

    @admin.display(description=_("shipped"))
    def shipped_share(self, file: ProductionFile) -> str:
        return f"{100 * file.shipped / file.orders:.1f} %" if file.orders else "—"

    @admin.display(description=_("exceptions"), ordering="exceptions")
    def exceptions_count(self, file: ProductionFile) -> str:
        if not file.exceptions:
            return "0"
        return admin_display.badge(str(file.exceptions), "danger")

    @admin.display(description=_("predicted shipped by"), ordering="predicted_p50")
    def predicted(self, file: ProductionFile) -> str:
        if file.predicted_p50 is None:
            return "—"
        return format_html(
            '{}<span class="bo-subtle block">{}</span>',
            file.predicted_p50,
            _("9 in 10 by %(date)s") % {"date": file.predicted_p90},
        )

    # ------------------------------------------------------------------ pages

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("file/", wrap(self.file_view), name="tracking_productionfile_file"),
            path("heatmap/", wrap(self.heatmap_view), name="tracking_productionfile_heatmap"),
            path("heatmap/cell/", wrap(self.cell_view), name="tracking_productionfile_cell"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        file = self.granted_object_or_404(request, object_id)
        return self.file_view(request, issuer_id=file.issuer_id, name=file.name)

    def _context(self, request: HttpRequest, **values) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            **values,
        }

    def file_view(self, request: HttpRequest, *, issuer_id: int | None = None, name: str = ""):
        """One file: stages, shares, first and last event, forecast and laggards, all live."""
        if not can_view_orders(request):
            raise PermissionDenied
        if issuer_id is None:
            raw_issuer, name = request.GET.get("issuer", ""), request.GET.get("name", "")
            if not raw_issuer.isdigit() or not name:
                raise Http404("Which file? Give issuer and name.")
            issuer_id = int(raw_issuer)
        # A file of an issuer outside the grant is a file that does not exist.
        issuer = get_object_or_404(issuers_visible_to(request.user), pk=issuer_id)
        now = timezone.now()
        figures = production_files.file_figures(issuer_id=issuer_id, name=name)
        if not figures.orders:
            raise Http404("No orders in this file.")
        laggards = production_files.file_laggards(issuer_id=issuer_id, name=name, figures=figures)
        context = self._context(
            request,
            title=_("File %(name)s") % {"name": name},
            subtitle=str(issuer),
            issuer=issuer,
            name=name,
            now=now,
            figures=figures,
            stage_bar=stage_bar_html(figures),
            laggards=laggards,
            medians=[(m, humanize_duration(m.median_elapsed(now))) for m in laggards.medians],
            laggard_rows=[
                (order, humanize_duration(now - order.stage_entered_at))
                for order in laggards.orders
            ],
            forecast=production_files.file_forecast(issuer_id=issuer_id, name=name),
            orders_url=file_orders_url(issuer_id=issuer_id, name=name),
            exceptions_url=file_orders_url(issuer_id=issuer_id, name=name, queue="exceptions"),
            cancelled_url=file_orders_url(issuer_id=issuer_id, name=name, queue="cancelled"),
            late_url=file_orders_url(issuer_id=issuer_id, name=name, queue="likely_late"),
            files_url=reverse("admin:tracking_productionfile_changelist"),
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tracking/insight/file_page.html", context)

    def heatmap_view(self, request: HttpRequest):
        """Sites x stages (median and p90 against the threshold) and carriers' shipment time."""
        if not can_view_orders(request):
            raise PermissionDenied
        window = _window(request)
        if sees_every_issuer(request.user):
            found = stage_times.heatmap(window_days=window)
        else:
            found = granted_heatmap(request.user, window_days=window, now=timezone.now())
        rows = []
        for site, cells in found.rows:
            rows.append(
                (
                    "All sites" if site == stage_times.ALL_SITES else (site or "(no site named)"),
                    [
                        (cell, _cell_url(window=window, stage=stage, site=site), stage)
                        for cell, stage in zip(cells, found.stages, strict=True)
                    ],
                )
            )
        context = self._context(
            request,
            title=_("Sites and stages"),
            subtitle=None,
            window=window,
            windows=_windows(),
            heatmap=found,
            rows=rows,
            thresholds=[(s, humanize_duration(stage_threshold(s))) for s in found.stages],
            carriers=[
                (cell, _cell_url(window=window, stage=SHIPPED_STATUS, carrier=cell.group))
                for cell in found.carriers
            ],
            shipment_threshold=humanize_duration(stage_times.shipment_threshold()),
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tracking/insight/heatmap.html", context)

    def cell_view(self, request: HttpRequest):
        """The orders behind one heat-map cell: their time in the stage, slowest first."""
        if not can_view_orders(request):
            raise PermissionDenied
        window = _window(request)
        stage = request.GET.get("stage", "")
        if stage not in (*stage_times.PRODUCTION_STAGES, SHIPPED_STATUS):
            raise Http404("Unknown stage.")
        site = request.GET.get("site")
        carrier = request.GET.get("carrier")
        if site == stage_times.ALL_SITES:
            site = None
        now = timezone.now()
        granted = issuers_granted(request.user)
        spans = [
            span
            for span in stage_times.cell_spans(
                window_days=window, now=now, stage=stage, site=site, carrier=carrier
            )
            # Orders of an issuer outside the grant are not listed.
            if span.issuer.issuer_id in granted
        ]
        label = carrier if carrier is not None else (site if site is not None else "All sites")
        context = self._context(
            request,
            title=_("%(stage)s at %(site)s")
            % {"stage": stage, "site": label or _("(no site named)")},
            subtitle=_("last %(days)s days") % {"days": window},
            window=window,
            stage=stage,
            spans=[
                (span, humanize_duration(dt.timedelta(seconds=span.duration_s))) for span in spans
            ],
            heatmap_url=f"{reverse('admin:tracking_productionfile_heatmap')}?window={window}",
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tracking/insight/cell.html", context)


def granted_heatmap(user, *, window_days: int, now: dt.datetime) -> stage_times.HeatMap:
    """The heat-map of the issuers `user` is granted, computed from their spans.

    The stored figures (`StageStat`) count every issuer together, so a user who does not see
    every issuer gets figures of the granted issuers' spans, read live (three grouped queries).
    """
    spans = visible_to(
        user,
        StageSpan.objects.filter(
            left_at__gte=now - dt.timedelta(days=window_days), left_at__lte=now
        ),
    )
    production = spans.filter(stage__in=stage_times.PRODUCTION_STAGES)
    by_site: dict[str, dict[str, stage_times.Cell]] = {}

    def cells(queryset, keys: tuple[str, ...], threshold_of):
        for found in stage_times.grouped_quantiles(queryset, keys=keys, value="duration_s"):
            named = dict(zip(keys, found.key, strict=True))
            stage = named["stage"]
            group = named.get("production_site", named.get("carrier", stage_times.ALL_SITES))
            threshold = threshold_of(stage).total_seconds()
            yield stage_times.Cell(group, stage, found.count, found.p50, found.p90, threshold)

    for keys in (("stage", "production_site"), ("stage",)):
        for cell in cells(production, keys, stage_threshold):
            by_site.setdefault(cell.group, {})[cell.stage] = cell
    carriers = sorted(
        cells(
            spans.filter(stage=SHIPPED_STATUS),
            ("stage", "carrier"),
            lambda stage: stage_times.shipment_threshold(),
        ),
        key=lambda cell: cell.group,
    )
    sites = sorted(by_site, key=lambda site: (site != stage_times.ALL_SITES, site))
    rows = [
        (site, [by_site[site].get(stage) for stage in stage_times.PRODUCTION_STAGES])
        for site in sites
    ]
    return stage_times.HeatMap(window_days, stage_times.PRODUCTION_STAGES, rows, carriers, now)


def _windows() -> list[int]:
    from django.conf import settings

    return list(settings.INSIGHT_WINDOWS)


def _window(request: HttpRequest) -> int:
    windows = _windows()
    raw = request.GET.get("window", "")
    return int(raw) if raw.isdigit() and int(raw) in windows else windows[0]


def _cell_url(*, window: int, stage: str, site: str | None = None, carrier: str | None = None):
    query = {"window": window, "stage": stage}
    if site is not None:
        query["site"] = site
    if carrier is not None:
        query["carrier"] = carrier
    return f"{reverse('admin:tracking_productionfile_cell')}?{urlencode(query)}"


# ---------------------------------------------------------------------------- the order page


def order_insight_context(order: CardOrder) -> dict:
    """What the order page adds: its file's page and its predicted ship date."""
    forecast = predictions.order_forecast(order, live=True)
    return {
        "file_url": file_page_url(issuer_id=order.issuer_id, name=order.input_file_name)
        if order.input_file_name
        else "",
        "forecast": forecast,
        "forecast_basis": predictions.Basis.LABELS.get(forecast.basis, "") if forecast else "",
    }


# ---------------------------------------------------------------------------- the orders list


def predicted_ship_html(order: CardOrder) -> str:
    """The list's predicted-ship column: p50 (and p90), flagged when past the dueDate."""
    forecast = predictions.order_forecast(order)
    if forecast is None:
        return "—"
    late = admin_display.badge(_("Likely late"), "danger") if forecast.likely_late else ""
    due = (
        " · " + _("due %(date)s") % {"date": order.due_date.isoformat()}
        if forecast.likely_late and order.due_date
        else ""
    )
    return format_html(
        '<span class="bo-nowrap">{}</span> {}<span class="bo-subtle block">{}{}</span>',
        forecast.p50.isoformat(),
        late,
        _("9 in 10 by %(date)s") % {"date": forecast.p90.isoformat()},
        due,
    )


def matching_files(term: str, *, user) -> list[dict]:
    """Files of the issuers `user` is granted whose name contains the search term, each with
    its page: the search offers them."""
    if not term.strip():
        return []
    return [
        {
            "name": file.name,
            "issuer_id": file.issuer.issuer_id,
            "orders": file.orders,
            "url": file_page_url(issuer_id=file.issuer_id, name=file.name),
        }
        for file in visible_to(user, ProductionFile.objects.filter(name__icontains=term.strip()))
        .select_related("issuer")
        .order_by("-first_event_at", "-pk")[:5]
    ]
