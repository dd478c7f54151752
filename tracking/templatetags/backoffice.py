"""Template helpers of the back office: labelled badges, durations, list links that keep filters."""

from __future__ import annotations

from django import template
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tracking.domain import labels
from tracking.domain.labels import humanize_duration
from tracking.domain.times import parse_time

register = template.Library()


def _display():
    # Imported when a tag runs, not when the library loads: importing the admin package
    # registers its pages, and unfold's admin loads these template libraries while it loads.
    from tracking.admin import display

    return display


@register.simple_tag
def badge(text, tone="neutral", title=""):
    return _display().badge(str(text), tone, title=title)


@register.simple_tag
def production_badge(status, inline=False):
    return _display().production_badge(status or "", inline=inline)


@register.simple_tag
def shipment_badge(status, inline=False):
    return _display().shipment_badge(status or "", inline=inline)


@register.filter
def duration(value):
    return humanize_duration(value)


@register.filter
def percent(value):
    return "—" if value is None else f"{value:.1%}"


@register.filter
def share(part, whole):
    """`part` as a percentage of `whole`, for bar widths (0 when whole is 0)."""
    try:
        return round(100 * part.total_seconds() / whole.total_seconds(), 1)
    except (AttributeError, ZeroDivisionError):
        return 0


@register.simple_tag(takes_context=True)
def list_url(context, **params):
    """The current list's URL with `params` replaced (None removes one), other filters kept."""
    request = context["request"]
    query = request.GET.copy()
    for key in ("p", "e"):
        query.pop(key, None)
    for key, value in params.items():
        if value in (None, ""):
            query.pop(key, None)
        else:
            query[key] = value
    encoded = query.urlencode()
    return f"{request.path}?{encoded}" if encoded else request.path


@register.filter
def when(value):
    """A date-time in the back office's one format, with its age ("6 s ago")."""
    return _display().when(value)


@register.filter
def when_exact(value):
    """A date-time in the back office's one format, without the age."""
    return _display().when(value, relative=False)


@register.simple_tag
def coded(kind, code, tone="neutral"):
    """A code's plain-language label as a badge, its code beside it (tracking.domain.labels)."""
    return _display().coded_badge(kind, code or "", tone)


@register.filter
def label_of(code, kind):
    return labels.label_text(kind, code)


COUNT_CAP = 10_000
_NOT_FILTERS = {"p", "o", "e", "_changelist_filters", "_to_field", "_popup"}


@register.simple_tag(takes_context=True)
def active_filters(context, cl):
    """The list's active filters as chips ({"label", "value", "remove_url"}) and its row count.

    The count stops at COUNT_CAP ("10,000+"): a bounded count stays fast at a million orders.
    """
    request = context["request"]
    chips = []
    seen: set[str] = set()
    for spec in cl.filter_specs:
        params = [p for p in spec.expected_parameters() if request.GET.get(p)]
        if not params:
            continue
        seen.update(params)
        title = str(spec.title)
        if hasattr(spec, "lookup_choices") and len(params) == 1:
            value = request.GET.get(params[0])
            value = _choice_labels(spec.lookup_choices).get(value, value)
        else:
            start = (
                request.GET.get(f"{spec.parameter_name}_from", "")
                if hasattr(spec, "parameter_name")
                else ""
            )
            end = (
                request.GET.get(f"{spec.parameter_name}_to", "")
                if hasattr(spec, "parameter_name")
                else ""
            )
            if start or end:
                value = _("%(start)s to %(end)s") % {"start": start or "…", "end": end or "…"}
            else:
                value = ", ".join(_bound_words(p, request.GET.get(p)) for p in params)
        chips.append({"label": title, "value": value, "remove_url": _without(request, params)})
    search_var = "q"
    for name in request.GET:
        if name in seen or name in _NOT_FILTERS or name == search_var:
            continue
        label, value = _lookup_chip(name, request.GET.get(name, ""))
        chips.append({"label": label, "value": value, "remove_url": _without(request, [name])})
    if request.GET.get(search_var):
        chips.append(
            {
                "label": _("search"),
                "value": request.GET.get(search_var),
                "remove_url": _without(request, [search_var]),
            }
        )
    # Unordered: the count need not sort what it counts.
    count = cl.queryset.order_by()[: COUNT_CAP + 1].count()
    return {
        "chips": chips,
        "count": f"{COUNT_CAP:,}+" if count > COUNT_CAP else f"{count:,}",
        "exact_count": count if count <= COUNT_CAP else None,
        "clear_url": request.path if chips else "",
    }


_LOOKUP_WORDS = {
    "gte": gettext_lazy("from"),
    "gt": gettext_lazy("after"),
    "lte": gettext_lazy("up to"),
    "lt": gettext_lazy("before"),
    "exact": "",
}


def _lookup_chip(name: str, value: str) -> tuple[str, str]:
    """A raw lookup from a dashboard link ("received_at__gte") as words, its time as ours."""
    field, _sep, lookup = name.partition("__")
    words = " ".join(str(p) for p in (field.replace("_", " "), _LOOKUP_WORDS.get(lookup, lookup)))
    moment = parse_time(value)
    if moment is not None:
        value = formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")
    return words.strip(), value


def _bound_words(name: str, value: str) -> str:
    """A date filter's exact bound from a dashboard link ("from 2026-03-05 14:00:00 UTC")."""
    _head, _sep, lookup = name.rpartition("__")
    if lookup not in ("gte", "lt"):
        return value
    return f"{_LOOKUP_WORDS[lookup]} {_lookup_chip(name, value)[1]}"


def _choice_labels(lookup_choices) -> dict[str, str]:
    """{value: label} of a filter's choices, pairs or (for plain field filters) bare values."""
    found = {}
    for entry in lookup_choices:
        if isinstance(entry, tuple | list) and len(entry) == 2:
            found[str(entry[0])] = str(entry[1])
        else:
            found[str(entry)] = str(entry)
    return found


def _without(request, names) -> str:
    query = request.GET.copy()
    for name in [*names, "p", "e"]:
        query.pop(name, None)
    encoded = query.urlencode()
    return f"{request.path}?{encoded}" if encoded else request.path
