"""How the back office shows statuses, flags and durations: labelled badges, never colour alone.

Every badge carries its text; the colour (tone) only repeats what the text says. The classes are
those of the theme's own labels, so they exist in its stylesheet.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from tracking.domain import carrier_status, labels, stage_limits
from tracking.domain.carriers import carrier_name, tracking_url_for
from tracking.domain.fold import RULES_VERSION
from tracking.domain.labels import humanize_duration
from tracking.domain.masking import personal_mask
from tracking.domain.statuses import (
    CANCELLED_STATUSES,
    FAILED_PRODUCTION_STATUSES,
    PRODUCTION_RANK,
    RETURNED_PRODUCTION_STATUSES,
    SHIPPED_STATUS,
)
from tracking.models import CardOrder
from tracking.selectors import order_queues

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
    'text-[12px] whitespace-nowrap h-6 leading-6 px-2 {}"{}>{}{}</span>'
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
    if status in FAILED_PRODUCTION_STATUSES:
        return "danger"
    if status in CANCELLED_STATUSES:
        return "neutral"
    if status == SHIPPED_STATUS:
        return "success"
    if status not in PRODUCTION_RANK or status in RETURNED_PRODUCTION_STATUSES:
        return "warning"
    return "info"


def coded_badge(kind: str, code: str, tone: str, *, inline: bool = False) -> str:
    """The plain-language label as a badge, its explanation on hover, the code beside it."""
    found = labels.label(kind, code)
    code_html = (
        format_html('<code class="bo-code{}">{}</code>', " bo-code--inline" if inline else "", code)
        if code
        else ""
    )
    return format_html(
        '<span class="bo-coded" data-code="{}">{}{}</span>',
        code,
        badge(found.text, tone, title=found.help),
        code_html,
    )


def coded(kind: str, code: str, *, tone: str = "neutral", empty: str | None = None) -> str:
    """A code on a detail page: its label, explanation on hover, the code beside it.

    With `empty`, an empty code shows that text instead of the table's label for "".
    """
    if not code and empty is not None:
        return empty
    return coded_badge(kind, code, tone, inline=True)


def production_badge(status: str, *, inline: bool = False) -> str:
    return coded_badge("production_status", status, production_tone(status), inline=inline)


SHIPMENT_CLASS_TONES = {
    carrier_status.DELIVERED: "success",
    carrier_status.RETURNED: "danger",
    carrier_status.EXCEPTION: "danger",
    carrier_status.FAILED_ATTEMPT: "warning",
    carrier_status.EXPIRED: "warning",
    carrier_status.UNKNOWN: "warning",
}


def shipment_tone(status: str) -> str:
    """The tone of a carrier word, by its class (`tracking.domain.carrier_status`)."""
    return SHIPMENT_CLASS_TONES.get(carrier_status.carrier_status_class(status), "info")


def shipment_words(status: str) -> str:
    """A carrier word as plain text: its class in staff's words, then the word as sent."""
    klass = carrier_status.carrier_status_class(status)
    return f"{labels.label('shipment_class', klass).text} ({status})"


def shipment_badge(status: str, *, inline: bool = False) -> str:
    """The carrier status's class in staff's words, the word as the carrier sent it beside it."""
    if not status:
        return ""
    klass = carrier_status.carrier_status_class(status)
    found = labels.label("shipment_class", klass)
    return format_html(
        '<span class="bo-coded" data-code="{}" data-class="{}">{}{}</span>',
        status,
        klass,
        badge(found.text, shipment_tone(status), title=found.help),
        format_html(
            '<code class="bo-code{}">{}</code>', " bo-code--inline" if inline else "", status
        ),
    )


def operation_tone(status: str) -> str:
    return {"SUCCESSFUL": "success", "FAILED": "danger", "PENDING": "neutral"}.get(
        status, "warning"
    )


def operation_badge(status: str, *, inline: bool = False) -> str:
    if not status:
        return "—"
    return coded_badge("operation_status", status, operation_tone(status), inline=inline)


def safe_http_url(url: str) -> str:
    """The URL if it is http(s), else "": D1 sends it, and a javascript: link must not render."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return ""
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def tracking_url(order: CardOrder) -> str:
    """The link to the carrier's tracking page for this order: the one place that decides it.

    The URL D1 sent (when it is http(s)), else the carrier's own page for the tracking number
    (`tracking.domain.carriers`), so every page and list links the same way.
    """
    return safe_http_url(tracking_url_for(order.carrier, order.tracking_number, order.tracking_url))


def shipment_summary(order: CardOrder, *, personal: bool = True) -> str:
    """The carrier status, then the tracking number linking to the carrier's page, the carrier.

    Without `personal` (viewers) the tracking number and link are masked (PERSONAL_FIELDS).
    """
    status = shipment_badge(order.shipment_status, inline=True)
    carrier = carrier_link(order, personal=personal)
    if not status and not carrier:
        return ""
    return format_html('{}<span class="block">{}</span>', status, carrier)


def carrier_link(order: CardOrder, *, personal: bool = True) -> str:
    """The tracking number linking to the carrier's tracking page (when safe), then the carrier.

    Without `personal` (viewers) neither the number nor the link is shown.
    """
    if not order.carrier and not order.tracking_number:
        return ""
    name = carrier_name(order.carrier) or _("carrier")
    url = tracking_url(order) if personal else ""
    number = order.tracking_number if personal else personal_mask(order.tracking_number)
    if url:
        return format_html(
            '<a class="bo-link bo-id" href="{}" target="_blank" rel="noopener noreferrer" '
            'title="{}" aria-label="{}">{}'
            '<span class="material-symbols-outlined bo-inline-icon" aria-hidden="true">'
            "open_in_new</span></a>"
            '<span class="bo-subtle block">{}</span>',
            url,
            number,
            _("Track %(number)s with %(carrier)s (opens in a new tab)")
            % {"number": number or _("the parcel"), "carrier": name},
            number or _("Track the parcel"),
            name,
        )
    return format_html(
        '<span class="bo-id" title="{}">{}</span><span class="bo-subtle block">{}</span>',
        number,
        number or "—",
        name,
    )


def _flag(kind_code: str, tone: str, *, icon: str | None = None, detail: str = "") -> str:
    found = labels.label("flag", kind_code)
    help_text = f"{found.help} {detail}".strip()
    return badge(found.text, tone, title=help_text, icon=icon)


def order_flags(order: CardOrder) -> list[str]:
    """The flags of an order as badges, each explained on hover: D1 error, conflict, ..."""
    flags = []
    if order.error_code or order.error:
        flags.append(
            format_html(
                '{}<code class="bo-code bo-truncate" title="{}">{}</code>',
                _flag("d1_error", "danger", detail=order.error),
                order.error or order.error_code,
                order.error_code,
            )
        )
    if order.has_conflict:
        flags.append(_flag("conflict", "danger"))
    if order.hold_code:
        # An open hold: D1's code and the reason it gave, not only in the raw JSON.
        flags.append(
            format_html(
                '{}<code class="bo-code bo-truncate" title="{}">{}</code>'
                '<span class="bo-subtle block bo-truncate" title="{}">{}</span>',
                _flag("on_hold", "warning", detail=order.hold_code),
                order.hold_code,
                order.hold_code,
                order.hold_reason,
                Truncator(order.hold_reason).chars(120),
            )
        )
    elif order.has_unknown_status:
        codes = ", ".join(order.unknown_codes or [])
        flags.append(
            format_html(
                '{}<code class="bo-code bo-truncate" title="{}">{}</code>',
                _flag("unknown_code", "warning", detail=codes),
                codes,
                codes,
            )
        )
    if order.needs_reconcile:
        reason = labels.label("reconcile_reason", order.reconcile_reason)
        flags.append(
            badge(
                _("Will ask D1: %(reason)s") % {"reason": str(reason.text).lower()},
                "primary",
                title=f"{labels.label('flag', 'needs_reconcile').help} {reason.help}",
                icon="sync",
            )
        )
    return flags


def rules_stamp(order: CardOrder) -> str:
    """Which rules derived the order's state, and whether they are the current ones."""
    if not order.event_count:
        return _("Not derived yet: waiting for D1's first message")
    if order.rules_version == RULES_VERSION:
        return _("v%(version)s (current)") % {"version": order.rules_version}
    return _("v%(version)s: older rules (manage.py rederive brings it up to date)") % {
        "version": order.rules_version
    }


def flags_html(order: CardOrder) -> str:
    flags = order_flags(order)
    if not flags:
        return format_html(
            '<span class="bo-subtle">—<span class="sr-only">{}</span></span>', _("no flags")
        )
    return format_html_join("", '<span class="bo-flag">{}</span>', ((f,) for f in flags))


def over_threshold_badge(order: CardOrder, *, now: dt.datetime) -> str:
    """ "Over 1 h" when the order has been in its stage longer than the stage's time limit."""
    if not order_queues.is_stuck(order, now=now):
        return ""
    threshold = humanize_duration(stage_limits.stage_threshold(order.production_status))
    return badge(
        _("Over its %(limit)s limit") % {"limit": threshold},
        "danger",
        icon="hourglass_bottom",
        title=_("Longer than this stage's time limit of %(limit)s") % {"limit": threshold},
    )


def time_in_stage(order: CardOrder, *, now: dt.datetime) -> SafeString | str:
    if order.stage_entered_at is None:
        return ""
    duration = humanize_duration(now - order.stage_entered_at)
    if order.is_terminal:
        return format_html(
            '<span class="bo-subtle" title="{}">{}</span>',
            _("The order reached a final stage %(duration)s ago") % {"duration": duration},
            _("final"),
        )
    if order_queues.is_stuck(order, now=now):
        threshold = humanize_duration(stage_limits.stage_threshold(order.production_status))
        return format_html(
            '{}<span class="block">{}</span>',
            duration,
            badge(
                _("Over %(limit)s") % {"limit": threshold},
                "danger",
                icon="hourglass_bottom",
                title=_("Longer than this stage's time limit of %(limit)s") % {"limit": threshold},
            ),
        )
    return duration


def when(
    value: dt.datetime | None, *, now: dt.datetime | None = None, relative: bool = True
) -> str:
    """A time in the user's zone and language (`2026年12月4日 21:30 JST`), then "6 s ago".

    The zone is the one the request activated (the user's, `services.preferences`) and is always
    written out; the exact time with seconds and offset is on hover and in the `<time>` element.
    """
    if value is None:
        return "—"
    local = timezone.localtime(value)
    text = formats.date_format(local, "DATETIME_FORMAT")
    exact = local.isoformat(timespec="seconds")
    if not relative:
        return format_html('<time datetime="{}" title="{}">{}</time>', exact, exact, text)
    now = now or timezone.now()
    delta = now - value
    age = (
        _("%(duration)s ago") % {"duration": humanize_duration(delta)}
        if delta.total_seconds() >= 0
        else _("in %(duration)s") % {"duration": humanize_duration(-delta)}
    )
    return format_html(
        '<time datetime="{}" title="{}">{}</time><span class="bo-subtle block">{}</span>',
        exact,
        exact,
        text,
        age,
    )


def date_only(value: dt.datetime | dt.date | None) -> str:
    """The user's day of a time (or a date as it is), in their language: 2026年12月4日."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        value = timezone.localtime(value).date()
    return formats.date_format(value, "DATE_FORMAT")


def d1_answer(answer: dict | None, *, personal: bool = True) -> str:
    """D1's answer on a reconcile attempt, in words: production, operation, shipment, error.

    Without `personal` (viewers) the tracking number, link and carrier message are masked.
    """
    if not answer:
        return ""
    parts = []
    if answer.get("productionStatus"):
        parts.append(production_badge(str(answer["productionStatus"]), inline=True))
    if answer.get("operationStatus"):
        operation = labels.label("operation_status", str(answer["operationStatus"]))
        parts.append(
            format_html(
                '<span class="bo-subtle block">{} {} <code class="bo-code--inline">{}'
                "</code></span>",
                _("Operation:"),
                operation.text,
                operation.code,
            )
        )
    shipment = answer.get("shipment") or {}
    if shipment:
        number = str(shipment.get("trackingNumber") or "")
        parts.append(
            format_html(
                '<span class="bo-subtle block">{} {}{} <span class="bo-id" title="{}">{}'
                "</span></span>",
                _("Shipment:"),
                shipment_words(str(shipment.get("status") or ""))
                if shipment.get("status")
                else _("no carrier status"),
                f", {carrier_name(str(shipment['carrier']))}" if shipment.get("carrier") else "",
                number if personal else "",
                number if personal else personal_mask(number),
            )
        )
    if answer.get("errorCode") or answer.get("error"):
        parts.append(
            format_html(
                '<span class="bo-subtle block">{} <code title="{}">{}</code></span>',
                _("D1 error:"),
                answer.get("error") or "",
                answer.get("errorCode") or answer.get("error"),
            )
        )
    return format_html_join("", "{}", ((part,) for part in parts))
