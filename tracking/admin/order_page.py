"""The order page rendered: the read model of `tracking.selectors.order_page` in badges and links.

Also whether "Ask D1 now" still waits for its answer (kept in the asker's session), when the
portal will ask D1 next, in words, and how many of D1's items wait to be folded into the order.
"""

from __future__ import annotations

import datetime as dt
import json

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from tracking.admin import display as admin_display
from tracking.admin import insight as admin_insight_columns
from tracking.admin import issuer_side as admin_issuer
from tracking.admin.events import order_events_context
from tracking.admin.reconcile import attempt_http, attempt_outcome_badge
from tracking.admin.timeline import stage_spans, timeline_entries
from tracking.domain import labels
from tracking.domain.masking import PERSONAL_MASK, can_see_personal
from tracking.domain.times import parse_time
from tracking.intake.projector import order_events_waiting
from tracking.models import CardOrder
from tracking.selectors.order_page import OrderPage
from tracking.services.reconcile import order_due_reason

RECONCILE_PENDING_FOR = dt.timedelta(minutes=5)


def order_page_context(model_admin, request, page: OrderPage) -> dict:
    """The template context of the order page of `page.order`, as `request`'s user sees it."""
    order, now = page.order, page.now
    personal = can_see_personal(request.user)
    return {
        "title": _("Card %(card_id)s") % {"card_id": order.card_id},
        "reconcile_status_url": reverse(
            "admin:tracking_cardorder_reconcile_status", args=[order.pk]
        ),
        "subtitle": _("Operation %(operation_id)s") % {"operation_id": order.operation_id},
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        "original": order,
        "order": order,
        "now": now,
        "production": admin_issuer.registered_badge(order)
        if page.awaiting_first_event
        else admin_display.production_badge(order.production_status),
        "operation_tone": admin_display.operation_tone(order.operation_status),
        "shipment": admin_display.shipment_badge(order.shipment_status),
        "carrier": admin_display.carrier_link(order, personal=personal),
        "personal": personal,
        "personal_mask": PERSONAL_MASK,
        "stage_over": admin_display.over_threshold_badge(order, now=now),
        "flags": admin_display.order_flags(order),
        "rules_stamp": admin_display.rules_stamp(order),
        "explanation": page.explanation,
        # D1's items stored but not folded yet (the projector folds them in seconds): the page
        # shows the order without them until then.
        "events_waiting": order_events_waiting(order.pk),
        "timeline": timeline_entries(page.events, zone=order.issuer.zone),
        "timeline_truncated": page.timeline_truncated,
        "stages": stage_spans(order, now=now),
        "reconcile_attempts": [
            {
                "attempt": attempt,
                "outcome": attempt_outcome_badge(attempt),
                "answer": admin_display.d1_answer(attempt.answer, personal=personal),
                "http": attempt_http(attempt),
                "trigger": labels.label_text("reconcile_trigger", attempt.trigger),
            }
            for attempt in page.attempts
        ],
        "operation_status_badge": admin_display.operation_badge(order.operation_status),
        "attempt_count": page.attempt_count,
        "reconcile_pending": reconcile_pending(request, order, page.attempts),
        "reconcile_next": reconcile_next(order, now=now),
        "acknowledgements": page.acknowledgements,
        "current_acknowledgement": page.current_acknowledgement,
        "next_exception_url": reverse(
            "admin:tracking_cardorder_change", args=[page.next_exception_id]
        )
        if page.next_exception_id
        else "",
        "exception": page.exception,
        "expected_delivery": page.expected_delivery,
        "carrier_updates": page.carrier_updates,
        "shipped_on": page.shipped_on,
        "delivered_on": page.delivered_on,
        "can_reconcile": model_admin.has_reconcile_permission(request),
        "can_replay": model_admin.has_replay_permission(request),
        "can_acknowledge": model_admin.has_acknowledge_permission(request),
        **admin_insight_columns.order_insight_context(order),
        "shipment_json": json.dumps(order.shipment, indent=2, sort_keys=True)
        if order.shipment
        else "",
        **admin_issuer.order_page_context(order, now=now),
        **order_events_context(order),
    }


def pending_key(order_id: int) -> str:
    return f"reconcile-asked:{order_id}"


def reconcile_pending(request, order: CardOrder, attempts: list) -> bool:
    """This staff member asked D1 in the last minutes and no attempt has started since.

    The time of the ask is kept in the session: no query, and only the asker's page waits.
    """
    asked = parse_time(request.session.get(pending_key(order.pk), ""))
    if asked is None or asked < timezone.now() - RECONCILE_PENDING_FOR:
        return False
    return not attempts or attempts[0].started_at < asked


def reconcile_next(order: CardOrder, *, now: dt.datetime) -> str:
    """When the portal will next ask D1, in words; never a time already past."""
    reason = order_due_reason(order=order, now=now)
    if not reason:
        return _("Not planned: nothing to ask D1 about")
    why = labels.label("reconcile_reason", reason).text.lower()
    if order.reconcile_next_at is None or order.reconcile_next_at <= now:
        return _("At the next automatic check (%(why)s)") % {"why": why}
    return format_html("{} ({})", admin_display.when(order.reconcile_next_at, now=now), why)
