"""List filters of the back office: queues, statuses, time in stage, dates, without full scans.

Each filter offers a fixed list of choices (no `SELECT DISTINCT` over a million orders) and
filters on indexed columns. The select boxes are native, labelled and keyboard-operable.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

from django import forms
from django.contrib import messages
from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import DropdownFilter, RangeDateFilter
from unfold.contrib.filters.forms import DropdownForm
from unfold.widgets import INPUT_CLASSES, UnfoldAdminSelectWidget

from tracking.domain import conditions, labels
from tracking.domain.carriers import CARRIERS
from tracking.domain.flags import ReconcileReason
from tracking.domain.statuses import PRODUCTION_RANK
from tracking.selectors import figures, order_queues

OTHER = "__other__"
NONE = "__none__"


class NativeDropdownForm(DropdownForm):
    """Unfold's dropdown form with a native <select>: works with the keyboard and screen readers."""

    widget = UnfoldAdminSelectWidget()


class ChoiceFilter(DropdownFilter):
    """A dropdown filter; `aliases` are older names of its parameter that links still carry.

    A field filter named its parameter after the lookup (`outcome__exact`); the same value under
    an alias is this filter's own, not a lookup the list would refuse.
    """

    form_class = NativeDropdownForm
    aliases: tuple[str, ...] = ()

    def __init__(self, request, params, model, model_admin):
        for alias in self.aliases:
            if alias in params:
                value = params.pop(alias)
                params.setdefault(self.parameter_name, value)
        super().__init__(request, params, model, model_admin)

    def expected_parameters(self):
        return [*super().expected_parameters(), *self.aliases]


class LabelledChoiceFilter(ChoiceFilter):
    """A drop-down of one column's codes, each shown with its label (`tracking.domain.labels`).

    The parameter is the column's name; `label_kind` names the labels' table.
    """

    label_kind: str = ""

    def lookups(self, request, model_admin):
        return labels.choices(self.label_kind)

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.parameter_name: value}) if value else queryset


# ---------------------------------------------------------------------------- orders


class QueueFilter(ChoiceFilter):
    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [(queue.key, queue.label) for queue in order_queues.QUEUES.values()]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        queue = order_queues.QUEUES.get(self.value() or "")
        return queryset.filter(queue.q(now=timezone.now())) if queue else queryset


class IssuerFilter(ChoiceFilter):
    """Every issuer from its own small table (not the distinct values of a big one)."""

    title = _("issuer")
    parameter_name = "issuer"

    def lookups(self, request, model_admin):
        from tracking.services.issuer_grants import issuers_visible_to

        # The issuers the user is granted only: a choice would give another's existence away.
        issuers = issuers_visible_to(request.user).only("issuer_id", "name")
        return [(str(issuer.pk), str(issuer)) for issuer in issuers]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(issuer_id=int(value)) if value and value.isdigit() else queryset


class ProductionStatusFilter(ChoiceFilter):
    title = _("production status")
    parameter_name = "production_status"

    def lookups(self, request, model_admin):
        return [
            *[
                (status, f"{labels.label_text('production_status', status)} ({status})")
                for status in PRODUCTION_RANK
            ],
            (NONE, _("No known status yet (only codes D1 does not publish)")),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == NONE:
            return queryset.filter(production_status="")
        if value:
            return queryset.filter(production_status=value)
        return queryset


class OperationStatusFilter(LabelledChoiceFilter):
    title = _("operation status")
    parameter_name = "operation_status"
    label_kind = "operation_status"


class StageAgeFilter(ChoiceFilter):
    title = _("time in stage")
    parameter_name = "stage_age"

    def lookups(self, request, model_admin):
        return [("stuck", _("Beyond its threshold")), ("within", _("Within its threshold"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == "stuck":
            return queryset.filter(order_queues.stuck_q(now=now))
        if self.value() == "within":
            return queryset.filter(order_queues.within_threshold_q(now=now))
        return queryset


class StageEnteredFilter(ChoiceFilter):
    title = _("entered current stage")
    parameter_name = "entered"
    WINDOWS = figures.TERMINAL_WINDOWS

    def lookups(self, request, model_admin):
        return [("24h", _("In the last 24 hours")), ("7d", _("In the last 7 days"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        # The dashboard's terminal figures count by this rule: the list shows the same rows.
        return queryset.filter(figures.entered_since_q(timezone.now() - window))


class CarrierFilter(ChoiceFilter):
    title = _("carrier")
    parameter_name = "carrier"

    def lookups(self, request, model_admin):
        return [
            *sorted(CARRIERS.items(), key=lambda item: item[1].lower()),
            (OTHER, _("Other carrier (a code not in D1's list)")),
            (NONE, _("No carrier yet")),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == OTHER:
            return queryset.exclude(carrier__in=list(CARRIERS)).exclude(carrier="")
        if value == NONE:
            return queryset.filter(carrier="")
        return queryset.filter(carrier=value) if value else queryset


class AssigneeFilter(ChoiceFilter):
    """Who took the order ("Take it"): me, nobody, or any one user by id."""

    title = _("taken by")
    parameter_name = "assignee"
    MINE, NOBODY = "me", "nobody"

    def lookups(self, request, model_admin):
        # No list of holders: it would cost every list a query. `?assignee=<user id>` still
        # filters by anyone (the triage column links there).
        return [(self.MINE, _("Taken by me")), (self.NOBODY, _("Not taken"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == self.MINE:
            return queryset.filter(assignee_id=request.user.pk)
        if value == self.NOBODY:
            return queryset.filter(assignee__isnull=True)
        if value and value.isascii() and value.isdigit() and len(value) <= 18:
            return queryset.filter(assignee_id=int(value))
        # Not a user id (nor one a database could hold): nobody holds such orders.
        return queryset.none() if value else queryset


class ProductionSiteFilter(ChoiceFilter):
    """The production sites orders have named, from a short-lived cache (D1 publishes no list).

    Sites are few; reading them is one index scan on `production_site`, shared for
    SITE_CHOICES_SECONDS so a busy list does not repeat it.
    """

    title = _("production site")
    parameter_name = "production_site"
    SITE_CHOICES_SECONDS = 300
    CACHE_KEY = "backoffice:production-sites"

    def lookups(self, request, model_admin):
        sites = known_production_sites(self.CACHE_KEY, self.SITE_CHOICES_SECONDS)
        value = self.value()
        if value and value not in sites:
            sites = [*sites, value]
        return [(site, site) for site in sites]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        return queryset.filter(production_site=value) if value else queryset


def known_production_sites(cache_key: str, seconds: int) -> list[str]:
    from django.core.cache import cache

    from tracking.models import CardOrder

    sites = cache.get(cache_key)
    if sites is None:
        sites = sorted(
            CardOrder.objects.exclude(production_site="")
            .order_by()
            .values_list("production_site", flat=True)
            .distinct()[:200]
        )
        cache.set(cache_key, sites, seconds)
    return sites


class ReconcileReasonFilter(ChoiceFilter):
    title = _("reconcile reason")
    parameter_name = "reconcile_reason"

    def lookups(self, request, model_admin):
        return [
            (code, f"{labels.label_text('reconcile_reason', code)} ({code})")
            for code in ReconcileReason.PRIORITY
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        return queryset.filter(needs_reconcile=True, reconcile_reason=self.value())


class OrderChangeFilter(ChoiceFilter):
    """The card's latest pull & change result (UPDATE_ORDER): its type, or its decision."""

    title = _("pull & change")
    parameter_name = "change"

    def lookups(self, request, model_admin):
        from tracking.intake.card_operations import CHANGE_TYPES

        return [
            ("any", _("Any change result")),
            *((f"type:{t}", t.replace("_", " ").capitalize()) for t in CHANGE_TYPES),
            ("result:accepted", _("Accepted")),
            ("result:rejected", _("Rejected")),
            ("result:unknown", _("Unknown shape")),
            ("cancel_unconfirmed", _("CANCEL accepted, not yet confirmed")),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value() or ""
        if value == "any":
            return queryset.exclude(change_result="")
        if value.startswith("type:"):
            return queryset.filter(change_type=value.removeprefix("type:"))
        if value.startswith("result:"):
            return queryset.filter(change_result=value.removeprefix("result:"))
        if value == "cancel_unconfirmed":
            return queryset.filter(conditions.cancel_unconfirmed_q())
        return queryset


class HasErrorFilter(ChoiceFilter):
    title = _("D1 error")
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return [("yes", _("With an error or error code")), ("no", _("Without"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        has_error = ~Q(error_code="") | ~Q(error="")
        if self.value() == "yes":
            return queryset.filter(has_error)
        if self.value() == "no":
            return queryset.exclude(has_error)
        return queryset


class LabelledDateRangeForm(forms.Form):
    """From/to date inputs with visible labels (the theme's form relies on placeholders)."""

    def __init__(self, name: str, title: str, data: dict) -> None:
        super().__init__(data=data)
        attrs = {"class": " ".join(INPUT_CLASSES), "type": "date"}
        self.fields[f"{name}_from"] = forms.DateField(
            label=_("%(filter)s from") % {"filter": str(title).capitalize()},
            required=False,
            widget=forms.DateInput(attrs),
        )
        self.fields[f"{name}_to"] = forms.DateField(
            label=_("%(filter)s to") % {"filter": str(title).capitalize()},
            required=False,
            widget=forms.DateInput(attrs),
        )


class DateRangeFilter(RangeDateFilter):
    """Inclusive date range; on a date-time column whole days in the current time zone.

    Compares the column itself (no `__date` cast), so an index on it stays usable.
    """

    template = "unfold/filters/filters_field.html"
    TITLES = {
        "first_event_at": "first seen",
        "updated_at": "last update",
        "due_date": "due date (D1's expected completion)",
        "first_received_at": "first seen",
        "received_at": "received",
        "started_at": "asked at",
    }

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = self.TITLES.get(field_path, self.title)

    def instant_parameters(self) -> list[str]:
        """The dashboard's links name an exact window (one hour, the last 24 hours):
        `<field>__gte` / `<field>__lt` with an ISO date-time are this filter's bounds too."""
        return [f"{self.field_path}__gte", f"{self.field_path}__lt"]

    def expected_parameters(self) -> list[str]:
        return [*super().expected_parameters(), *self.instant_parameters()]

    def queryset(self, request, queryset: QuerySet) -> QuerySet | None:
        queryset = self._within_instants(request, queryset)
        start = _parse_date(self.used_parameters.get(f"{self.parameter_name}_from"))
        end = _parse_date(self.used_parameters.get(f"{self.parameter_name}_to"))
        if start is None and end is None:
            return queryset
        if start is not None and end is not None and start > end:
            # Refused, not run: an inverted range would silently list nothing.
            messages.error(
                request,
                _(
                    "%(filter)s: the range from %(start)s to %(end)s ends before it starts, "
                    "so it was not applied. Swap the dates or clear one."
                )
                % {
                    "filter": str(self.title).capitalize(),
                    "start": f"{start:%Y-%m-%d}",
                    "end": f"{end:%Y-%m-%d}",
                },
            )
            return queryset
        is_datetime = isinstance(self.field, models.DateTimeField)
        filters = {}
        if start is not None:
            filters[f"{self.field_path}__gte"] = _day_start(start) if is_datetime else start
        if end is not None:
            if is_datetime:
                filters[f"{self.field_path}__lt"] = _day_start(end + dt.timedelta(days=1))
            else:
                filters[f"{self.field_path}__lte"] = end
        return queryset.filter(**filters)

    def _within_instants(self, request, queryset: QuerySet) -> QuerySet:
        """Apply the exact bounds; one that is not a date-time is reported and left out."""
        is_datetime = isinstance(self.field, models.DateTimeField)
        for name in self.instant_parameters():
            value = self.used_parameters.get(name)
            value = value[-1] if isinstance(value, list) and value else value
            if value in (None, "", []):
                continue
            bound = _parse_instant(value) if is_datetime else _parse_date(value)
            if bound is None:
                expected = (
                    _("a date and time (2026-03-05T14:00:00+00:00)")
                    if is_datetime
                    else _("a date (2026-03-05)")
                )
                messages.error(
                    request,
                    _("%(filter)s: %(value)s is not %(expected)s, so that bound was not applied.")
                    % {
                        "filter": str(self.title).capitalize(),
                        "value": repr(value),
                        "expected": expected,
                    },
                )
                continue
            queryset = queryset.filter(**{name: bound})
        return queryset

    def choices(self, changelist) -> Iterator[dict]:
        yield {
            "form": LabelledDateRangeForm(
                self.parameter_name,
                str(self.title),
                {
                    key: self.used_parameters.get(key)
                    for key in (f"{self.parameter_name}_from", f"{self.parameter_name}_to")
                },
            )
        }


def _parse_date(value) -> dt.date | None:
    value = value[0] if isinstance(value, list) else value
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


_OFFSET_AS_SPACE = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")


def _parse_instant(value) -> dt.datetime | None:
    """An ISO date-time (a bare date is its midnight); without an offset, the portal's zone."""
    # A "+" typed into a URL by hand arrives as a space: "14:00:00 00:00" means "+00:00".
    value = _OFFSET_AS_SPACE.sub(r"\1+\2", str(value).strip())
    try:
        moment = parse_datetime(value)
    except ValueError:  # well-formed but impossible (month 13)
        return None
    if moment is None:
        day = _parse_date(value)
        return _day_start(day) if day is not None else None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


# ---------------------------------------------------------------------------- deliveries


class RefusedFilter(ChoiceFilter):
    title = _("refused")
    parameter_name = "refused"

    def lookups(self, request, model_admin):
        return [
            ("yes", _("Refused or with refused items")),
            ("no", _("Accepted in full")),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        refused = Q(status_code__gte=400) | Q(rejected_count__gt=0)
        if self.value() == "yes":
            return queryset.filter(refused)
        if self.value() == "no":
            return queryset.exclude(refused)
        return queryset


class DuplicatesFilter(ChoiceFilter):
    title = _("duplicates")
    parameter_name = "duplicates"

    def lookups(self, request, model_admin):
        return [("yes", _("With duplicate items")), ("no", _("Without"))]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(duplicate_count__gt=0)
        if self.value() == "no":
            return queryset.filter(duplicate_count=0)
        return queryset


class StatusCodeFilter(ChoiceFilter):
    title = _("status code")
    parameter_name = "status_code"

    def lookups(self, request, model_admin):
        return [
            (str(code), str(code))
            for code in (204, 400, 401, 403, 404, 405, 411, 413, 415, 429, 500, 503)
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(status_code=int(value)) if value and value.isdigit() else queryset


# ---------------------------------------------------------------------------- events


class OutcomeFilter(LabelledChoiceFilter):
    title = _("what it did")
    parameter_name = "outcome"
    aliases = ("outcome__exact",)
    label_kind = "outcome"


class SourceFilter(LabelledChoiceFilter):
    title = _("came from")
    parameter_name = "source"
    label_kind = "source"


# ---------------------------------------------------------------------------- reconcile attempts


class AttemptOutcomeFilter(LabelledChoiceFilter):
    title = _("D1's answer")
    parameter_name = "outcome"
    aliases = ("outcome__exact",)
    label_kind = "reconcile_outcome"


class AttemptTriggerFilter(LabelledChoiceFilter):
    title = _("asked by")
    parameter_name = "trigger"
    label_kind = "reconcile_trigger"


class AttemptReasonFilter(LabelledChoiceFilter):
    title = _("why D1 was asked")
    parameter_name = "reason"
    label_kind = "reconcile_reason"
