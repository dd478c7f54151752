"""Template helpers of the back office: labelled badges, durations, list links that keep filters."""

from __future__ import annotations

from django import template

from tracking import admin_display
from tracking.services.timeline import humanize_duration

register = template.Library()


@register.simple_tag
def badge(text, tone="neutral", title=""):
    return admin_display.badge(str(text), tone, title=title)


@register.simple_tag
def production_badge(status):
    return admin_display.production_badge(status or "")


@register.simple_tag
def shipment_badge(status):
    return admin_display.shipment_badge(status or "")


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
