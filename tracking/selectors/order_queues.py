"""The work queues staff follow (`QUEUES`), and the rules that depend on the clock.

One place says what each queue means, so that the admin lists, the sidebar, the dashboard and
the CSV export agree: stuck (a stage's time limit), silent (D1's first word overdue), in transit
too long, and the registry of every queue. The status classes they filter with are conditions
of `tracking.domain.conditions`. Every condition is a `Q` over `CardOrder` columns that have
an index.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from tracking.domain.conditions import (
    cancelled_q,
    carrier_word_unknown_q,
    delivered_q,
    delivery_failed_q,
    exception_q,
    failed_q,
    likely_late_q,
    returned_q,
    superseded_q,
    waiting_q,
)
from tracking.domain.stage_limits import stage_threshold, stage_thresholds
from tracking.domain.statuses import SHIPPED_STATUS


def acknowledged_q() -> Q:
    """Orders whose exception staff acknowledged after it last changed.

    A new failure or error code, a new conflict or a new unknown code re-opens the exception
    (`exception_changed_at`); other news, such as the next carrier update, does not.
    """
    from tracking.models import OrderAcknowledgement

    return Q(
        Exists(
            OrderAcknowledgement.objects.filter(
                order=OuterRef("pk"), created_at__gte=OuterRef("exception_changed_at")
            )
        )
    )


def open_exception_q() -> Q:
    return exception_q() & ~acknowledged_q()


def stuck_in_stage_q(status: str, *, now: dt.datetime) -> Q:
    """Open orders in `status` for longer than its threshold: one range of `order_status_stage`.

    Not terminal (an operation D1 ended as FAILED at this step waits for nothing) and not
    superseded (the card's newer operation is the one followed).
    """
    return (
        Q(production_status=status, stage_entered_at__lt=now - stage_threshold(status))
        & waiting_q()
    )


def stuck_q(*, now: dt.datetime) -> Q:
    """Non-terminal orders that entered their current stage longer ago than its threshold.

    The Stuck queue, the dashboard's stuck figures and the stuck alert all count this. One
    range per stage on the (production_status, stage_entered_at) index.
    """
    condition = Q()
    for status in stage_thresholds():
        condition |= stuck_in_stage_q(status, now=now)
    return condition


def within_threshold_q(*, now: dt.datetime) -> Q:
    condition = Q()
    for status, threshold in stage_thresholds().items():
        condition |= Q(production_status=status, stage_entered_at__gte=now - threshold)
    return condition & Q(is_terminal=False)


def is_stuck(order, *, now: dt.datetime) -> bool:
    """The rule of `stuck_q`, for one order already in memory."""
    if order.is_terminal or order.superseded_by_id or order.stage_entered_at is None:
        return False
    if order.production_status not in stage_thresholds():
        return False
    return now - order.stage_entered_at > stage_threshold(order.production_status)


# ---------------------------------------------------------------------------- the issuer's side


def awaiting_first_event_q() -> Q:
    """Registered orders D1 has not spoken about yet (index `order_awaiting_first_event`)."""
    return Q(event_count=0, superseded_by__isnull=True, registered_at__isnull=False)


def silent_after(issuer_id: str) -> dt.timedelta:
    """How long a registered order of `issuer_id` may wait for D1's first word."""
    seconds = settings.REGISTERED_SILENT_OVERRIDES.get(issuer_id)
    if seconds is None:
        return settings.REGISTERED_SILENT_AFTER
    return dt.timedelta(seconds=int(seconds))


def silent_q(*, now: dt.datetime) -> Q:
    """Registered orders still without any event after their issuer's silence threshold.

    One range on `order_awaiting_first_event` per issuer with its own threshold, one for the rest.
    """
    from tracking.models import Issuer

    overrides = settings.REGISTERED_SILENT_OVERRIDES
    condition = Q()
    other = Q()
    if overrides:
        pks = dict(
            Issuer.objects.filter(issuer_id__in=list(overrides)).values_list("issuer_id", "pk")
        )
        for issuer_id, pk in sorted(pks.items()):
            condition |= Q(issuer_id=pk, registered_at__lt=now - silent_after(issuer_id))
        other = ~Q(issuer_id__in=sorted(pks.values()))
    condition |= other & Q(registered_at__lt=now - settings.REGISTERED_SILENT_AFTER)
    return awaiting_first_event_q() & condition


def is_silent(order, *, now: dt.datetime) -> bool:
    """The rule of `silent_q`, for one order already in memory (its issuer loaded)."""
    if order.registered_at is None or order.event_count or order.superseded_by_id:
        return False
    return now - order.registered_at > silent_after(order.issuer.issuer_id)


def in_transit_long_q(*, now: dt.datetime) -> Q:
    """Shipped longer ago than SHIPMENT_IN_TRANSIT_THRESHOLD and the carrier not final yet.

    A range on `order_status_stage` (CARD_SHIPPED, entered before the cut-off).
    """
    return Q(
        production_status=SHIPPED_STATUS,
        stage_entered_at__lt=now - settings.SHIPMENT_IN_TRANSIT_THRESHOLD,
        shipment_final=False,
    )


# ---------------------------------------------------------------------------- the queues


@dataclass(frozen=True)
class Queue:
    """One work queue: its condition and every name staff see it by.

    The orders list's queue filter and tabs, the sidebar, the list's heading and the dashboard's
    links are all read from `QUEUES`: adding a queue is one entry here.
    """

    # The words are lazy translations: each reader sees them in their own language.
    key: str  # ?queue=<key> on the orders list
    title: str | Promise  # the list's heading
    label: str | Promise  # the choice in the queue filter
    description: str | Promise  # the line under the heading: what is in the queue
    condition: Callable[[dt.datetime], Q]
    section: str = ""  # the sidebar group it is listed in ("" for none)
    nav: str | Promise = ""  # its name in the sidebar (the title when empty)
    tab: str | Promise = ""  # its tab above the orders list ("" for none)
    icon: str = ""  # a Material Symbols name, in the sidebar and the tab
    ordering: tuple[str, ...] = ()  # the list's order when not the default

    def q(self, *, now: dt.datetime) -> Q:
        return self.condition(now)


# Sidebar groups, in the order they are shown.
WORK, ISSUER_SIDE, AFTER_SHIPMENT, RECONCILIATION = (
    "work",
    "issuer",
    "after_shipment",
    "reconciliation",
)

QUEUES: dict[str, Queue] = {
    queue.key: queue
    for queue in (
        Queue(
            key="open",
            title=_("Open orders"),
            label=_("Open (not in a final stage)"),
            description=_("Orders not yet in a final stage (shipped, failed or cancelled)."),
            condition=lambda now: Q(is_terminal=False),
        ),
        Queue(
            key="exceptions",
            title=_("Exceptions"),
            label=_("Exceptions (not acknowledged)"),
            description=(
                _(
                    "Failures D1 reported, conflicting or unknown codes, D1 errors and carrier "
                    "problems (lost, damaged, returned), not yet acknowledged."
                )
            ),
            condition=lambda now: open_exception_q(),
            section=WORK,
            tab=_("Exceptions"),
            icon="error",
            # First flagged first: a carrier update or a refresh never moves a row under the
            # cursor (index `order_exception_flagged`).
            ordering=("exception_changed_at", "id"),
        ),
        Queue(
            key="stuck",
            title=_("Stuck orders"),
            label=_("Stuck beyond threshold"),
            description=(
                _("Orders in a stage for longer than the stage's time limit (see Time in stage).")
            ),
            condition=lambda now: stuck_q(now=now),
            section=WORK,
            tab=_("Stuck"),
            icon="hourglass_top",
        ),
        Queue(
            key="likely_late",
            title=_("Likely late"),
            label=_("Likely late (expected to ship after its due date)"),
            description=(
                _(
                    "Open orders expected to ship after the date D1 set for them (dueDate): by "
                    "then, half of similar orders had shipped. Soonest due first."
                )
            ),
            condition=lambda now: likely_late_q(),
            section=WORK,
            tab=_("Likely late"),
            icon="event_busy",
            ordering=("due_date", "prediction__p50", "pk"),
        ),
        Queue(
            key="reconcile",
            title=_("Orders that need reconciliation"),
            label=_("Needs reconciliation"),
            description=(
                _("Missing steps, a hold or a conflict: the portal will ask D1 for the truth.")
            ),
            condition=lambda now: Q(needs_reconcile=True),
            section=RECONCILIATION,
            nav=_("Needs reconciliation"),
            tab=_("Needs reconciliation"),
            icon="published_with_changes",
        ),
        Queue(
            key="failed",
            title=_("Orders that failed in production"),
            label=_("Failed in production"),
            description=(
                _(
                    "D1 rejected the data (DATA_EXCEPTION), production failed "
                    "(CARD_PROD_EXCEPTION), or D1 reported the operation FAILED at any step."
                )
            ),
            condition=lambda now: failed_q(),
        ),
        Queue(
            key="cancelled",
            title=_("Cancelled orders"),
            label=_("Cancelled"),
            description=_("Cancelled at the issuer's request (CARD_PROD_CANCELED)."),
            condition=lambda now: cancelled_q(),
            tab=_("Cancelled"),
        ),
        Queue(
            key="acknowledged",
            title=_("Acknowledged exceptions"),
            label=_("Acknowledged exceptions"),
            description=(
                _(
                    "Exceptions staff have handled; each returns to Exceptions when the exception "
                    "changes."
                )
            ),
            condition=lambda now: exception_q() & acknowledged_q(),
        ),
        Queue(
            key="silent",
            title=_("Silent orders"),
            label=_("Silent (registered, nothing from D1)"),
            description=(
                _(
                    "Registered by the issuer, and D1 has said nothing about them for longer than "
                    "the portal is set to wait: the automatic check asks D1 for each card."
                )
            ),
            condition=lambda now: silent_q(now=now),
            section=ISSUER_SIDE,
            tab=_("Silent"),
            icon="pending_actions",
        ),
        Queue(
            key="registered",
            title=_("Registered orders without events"),
            label=_("Registered, no events yet"),
            description=_("Registered by the issuer; no notification or on-demand answer yet."),
            condition=lambda now: awaiting_first_event_q(),
        ),
        Queue(
            key="superseded",
            title=_("Replaced by a newer order"),
            label=_("Replaced by a newer order of the same card"),
            description=(
                _(
                    "The same card was ordered again (a newer operation); these older orders are "
                    "no longer followed or checked with D1."
                )
            ),
            condition=lambda now: superseded_q(),
            section=ISSUER_SIDE,
            icon="switch_access_shortcut",
        ),
        Queue(
            key="delivered",
            title=_("Delivered"),
            label=_("Delivered"),
            description=_("The carrier reported delivery."),
            condition=lambda now: delivered_q(),
            section=AFTER_SHIPMENT,
            icon="task_alt",
        ),
        Queue(
            key="in_transit_long",
            title=_("In transit too long"),
            label=_("In transit too long"),
            description=(
                _(
                    "Shipped longer ago than the portal is set to allow for transit; the carrier "
                    "has not reported delivery."
                )
            ),
            condition=lambda now: in_transit_long_q(now=now),
            section=AFTER_SHIPMENT,
            icon="local_shipping",
        ),
        Queue(
            key="returned",
            title=_("Returned"),
            label=_("Returned"),
            description=(
                _(
                    "Returned by the tracking hub or returned to sender by the carrier (an "
                    "exception)."
                )
            ),
            condition=lambda now: returned_q(),
            section=AFTER_SHIPMENT,
            icon="keyboard_return",
        ),
        Queue(
            key="delivery_failed",
            title=_("Delivery failed"),
            label=_("Delivery failed"),
            description=_("The carrier reported a failed delivery."),
            condition=lambda now: delivery_failed_q(),
            section=AFTER_SHIPMENT,
            icon="report",
        ),
        Queue(
            key="carrier_word_unknown",
            title=_("Carrier words not understood"),
            label=_("Carrier word not understood"),
            description=(
                _(
                    "The carrier's latest status is a word the portal does not know; it is shown "
                    "as sent and is not an exception by itself."
                )
            ),
            condition=lambda now: carrier_word_unknown_q(),
        ),
    )
}


def queues_in(section: str) -> list[Queue]:
    """The queues the sidebar lists in `section`, in registry order."""
    return [queue for queue in QUEUES.values() if queue.section == section]
