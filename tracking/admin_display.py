"""How the back office shows statuses, flags and durations: labelled badges, never colour alone.

Every badge carries its text; the colour (tone) only repeats what the text says. The classes are
those of the theme's own labels, so they exist in its stylesheet.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from tracking.carriers import carrier_name, tracking_url_for
from tracking.data_care import personal_mask
from tracking.models import CardOrder
from tracking.rules import (
    FAILURE_STATUSES,
    FINAL_SHIPMENT_STATUSES,
    PRODUCTION_RANK,
    SHIPMENT_STATUS_RANK,
)
from tracking.services import order_queues
from tracking.services.timeline import humanize_duration

TONE_CLASSES = {
    "info": "bg-blue-100 text-blue-700 dark:bg-blue-500/20 dark:text-blue-400",
    "danger": "bg-red-100 text-red-700 dark:bg-red-500/20 dark:text-red-400",
    "warning": "bg-orange-100 text-orange-700 dark:bg-orange-500/20 dark:text-orange-400",
    "success": "bg-green-100 text-green-700 dark:bg-green-500/20 dark:text-green-400",
    "primary": "bg-primary-100 text-primary-700 dark:bg-primary-500/20 dark:text-primary-400",
    "neutral": "bg-base-500/8 text-base-700 dark:bg-base-500/20 dark:text-base-200",
}
# A symbol beside the text, so that the badge reads the same in grey scale.
TONE_ICONS = {
    "success": "check_circle",
    "danger": "error",
    "warning": "warning",
    "info": "info",
    "neutral": "",
    "primary": "",
}
_BADGE = (
    '<span class="bo-badge inline-flex items-center gap-1 font-semibold rounded-default '
    'text-[11px] uppercase whitespace-nowrap h-6 leading-6 px-2 {}"{}>{}{}</span>'
)


def badge(text: str, tone: str = "neutral", *, title: str = "", icon: str | None = None) -> str:
    icon = TONE_ICONS.get(tone, "") if icon is None else icon
    icon_html = (
        format_html(
            '<span class="material-symbols-outlined bo-badge-icon" aria-hidden="true">{}</span>',
            icon,
        )
        if icon
        else ""
    )
    title_attr = format_html(' title="{}"', title) if title else ""
    return format_html(
        _BADGE, TONE_CLASSES.get(tone, TONE_CLASSES["neutral"]), title_attr, icon_html, text
    )


def production_tone(status: str) -> str:
    if not status:
        return "warning"
    if status in FAILURE_STATUSES - order_queues.CANCELLED_STATUSES:
        return "danger"
    if status in order_queues.CANCELLED_STATUSES:
        return "neutral"
    if status == "CARD_SHIPPED":
        return "success"
    if status not in PRODUCTION_RANK:
        return "warning"
    if status == "CARD_RETURNED":
        return "warning"
    return "info"


def production_badge(status: str) -> str:
    if not status:
        return badge("No known status", "warning")
    title = "" if status in PRODUCTION_RANK else "A status the portal does not know"
    return badge(status, production_tone(status), title=title)


def shipment_tone(status: str) -> str:
    if status in FINAL_SHIPMENT_STATUSES:
        return "success" if status == "DELIVERED" else "warning"
    if status in ("EXCEPTION", "DELAYED", "FAILED_ATTEMPT"):
        return "warning"
    if status and status not in SHIPMENT_STATUS_RANK:
        return "warning"
    return "info"


def shipment_badge(status: str) -> str:
    if not status:
        return ""
    return badge(status.replace("_", " "), shipment_tone(status))


def operation_tone(status: str) -> str:
    return {"SUCCESSFUL": "success", "FAILED": "danger", "PENDING": "neutral"}.get(
        status, "warning"
    )


def safe_http_url(url: str) -> str:
    """The URL if it is http(s), else "": D1 sends it, and a javascript: link must not render."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return ""
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def shipment_summary(order: CardOrder, *, personal: bool = True) -> str:
    """The carrier status, then the carrier linking to its tracking page, then the number.

    Without `personal` (viewers) the tracking number and link are masked (PERSONAL_FIELDS).
    """
    status = shipment_badge(order.shipment_status)
    carrier = carrier_link(order, personal=personal)
    if not status and not carrier:
        return ""
    return format_html('{}<span class="block">{}</span>', status, carrier)


def carrier_link(order: CardOrder, *, personal: bool = True) -> str:
    """The carrier's name linking to its tracking page (when the URL is safe), and the number.

    Without `personal` (viewers) neither the number nor the link is shown.
    """
    if not order.carrier and not order.tracking_number:
        return ""
    name = carrier_name(order.carrier) or "carrier"
    url = (
        safe_http_url(tracking_url_for(order.carrier, order.tracking_number, order.tracking_url))
        if personal
        else ""
    )
    number = order.tracking_number if personal else personal_mask(order.tracking_number)
    if url:
        return format_html(
            '<a class="bo-link" href="{}" target="_blank" rel="noopener noreferrer" '
            'aria-label="Track {} with {} (opens in a new tab)">{}'
            '<span class="material-symbols-outlined bo-inline-icon" aria-hidden="true">'
            "open_in_new</span></a>"
            '<span class="bo-subtle block bo-nowrap">{}</span>',
            url,
            number or "the parcel",
            name,
            name,
            number,
        )
    return format_html('{}<span class="bo-subtle block">{}</span>', name, number)


_REASON_WORDS = {"conflict": "conflict", "unknown_status": "unknown code", "gap": "gap"}


def order_flags(order: CardOrder) -> list[str]:
    """The flags of an order as badges: needs reconcile (and why), unknown code, conflict, error."""
    flags = []
    if order.needs_reconcile:
        reason = _REASON_WORDS.get(order.reconcile_reason, order.reconcile_reason or "pending")
        flags.append(badge(f"Reconcile: {reason}", "primary", icon="sync"))
    if order.has_conflict:
        flags.append(badge("Conflict", "danger"))
    if order.has_unknown_status:
        codes = ", ".join(order.unknown_codes or [])
        flags.append(badge("Unknown code", "warning", title=codes))
    if order.error_code or order.error:
        flags.append(
            format_html(
                '{}<span class="bo-subtle block">{}</span>',
                badge("D1 error", "danger", title=order.error),
                order.error_code,
            )
        )
    return flags


def flags_html(order: CardOrder) -> str:
    flags = order_flags(order)
    if not flags:
        return mark_safe('<span class="bo-subtle">—<span class="sr-only">no flags</span></span>')
    return format_html_join("", '<span class="bo-flag">{}</span>', ((f,) for f in flags))


def time_in_stage(order: CardOrder, *, now: dt.datetime) -> SafeString | str:
    if order.stage_entered_at is None:
        return ""
    duration = humanize_duration(now - order.stage_entered_at)
    if order.is_terminal:
        return format_html('{}<span class="bo-subtle block">final stage</span>', duration)
    if order_queues.is_stuck(
        production_status=order.production_status,
        is_terminal=order.is_terminal,
        stage_entered_at=order.stage_entered_at,
        now=now,
    ):
        threshold = humanize_duration(order_queues.stage_threshold(order.production_status))
        return format_html(
            '{}<span class="block">{}</span>',
            duration,
            badge(f"Over {threshold}", "danger", icon="hourglass_bottom"),
        )
    return duration
