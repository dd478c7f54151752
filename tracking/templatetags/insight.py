"""Template helpers of the insight pages (files, heat-map)."""

from __future__ import annotations

import datetime as dt

from django import template

from tracking.domain.labels import humanize_duration

register = template.Library()


@register.filter
def seconds(value):
    """A number of seconds as a readable duration ("2 h 5 min")."""
    return "—" if value is None else humanize_duration(dt.timedelta(seconds=value))
