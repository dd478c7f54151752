"""Plain-language labels for every code staff meet: statuses, reasons, flags, sources, outcomes.

One table beside the rules (`tracking/domain/statuses.py`), so that the back office, its filters
and the CSV
export all say the same thing. Each code has a short label and a one-line explanation; the code
itself stays visible as secondary text, because D1's documentation and support speak in codes.
A code that is not in the table is shown as such ("Unknown code"), never dressed up as known.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from tracking.domain import carrier_status


@dataclass(frozen=True)
class Label:
    code: str
    text: str | Promise
    help: str | Promise
    known: bool = True


# kind -> code -> (label, one-line explanation), each in the reader's language.
LABELS: dict[str, dict[str, tuple[Promise, Promise]]] = {
    # details.status (SPEC §2.1): where the card is in production.
    "production_status": {
        "CARD_PROD_REQUESTED": (_("Requested"), _("The card was ordered through D1's APIs.")),
        "DATA_PREPARED": (_("Data prepared"), _("D1 processed the card data successfully.")),
        "CARD_PROD_READY": (
            _("Ready to personalise"),
            _("The data reached the personalisation centre; the card is ready to be made."),
        ),
        "CARD_PROD_ONGOING": (_("Being personalised"), _("The card is being made.")),
        "CARD_PROD_DONE": (
            _("Personalised"),
            _("The card is made and waits to be prepared for shipment."),
        ),
        "CARD_SHIPPED": (_("Shipped"), _("The card was handed to the carrier.")),
        "CARD_RETURNED": (_("Returned"), _("The carrier brought the card back.")),
        "DATA_EXCEPTION": (
            _("Data rejected"),
            _("D1 could not process the card data; the card is rejected."),
        ),
        "CARD_PROD_EXCEPTION": (
            _("Production failed"),
            _("Personalisation hit a problem; the card was not made."),
        ),
        "CARD_PROD_CANCELED": (_("Cancelled"), _("Cancelled at the issuer's request.")),
        "": (_("No known status"), _("Only codes the portal does not know have arrived so far.")),
    },
    # The operation's own status (top-level `status`).
    "operation_status": {
        "PENDING": (_("In progress"), _("D1 is still working on this order.")),
        "SUCCESSFUL": (_("Succeeded"), _("D1 finished this operation successfully.")),
        "FAILED": (_("Failed"), _("D1 reports the operation failed; see the error and reason.")),
    },
    "operation": {
        "PRODUCE": (_("Card production"), _("A card made and shipped by Thales.")),
        "STANDALONE_TRACKING": (
            _("Tracking only"),
            _("A card made elsewhere; D1 forwards the carrier's updates."),
        ),
        "UPDATE_ORDER": (_("Order change"), _("A change to the order requested before shipment.")),
    },
    # details.shipment.status: D1 publishes no list; these are the common carrier milestones.
    "shipment_status": {
        "LABEL_CREATED": (
            _("Label created"),
            _("The carrier has the parcel's details, not the parcel."),
        ),
        "INFO_RECEIVED": (_("Details received"), _("The carrier has the parcel's details.")),
        "PENDING": (_("Awaiting carrier"), _("The carrier has not picked the parcel up yet.")),
        "PICKED_UP": (_("Picked up"), _("The carrier has the parcel.")),
        "IN_TRANSIT": (_("In transit"), _("On its way.")),
        "DELAYED": (_("Delayed"), _("The carrier reports a delay.")),
        "EXCEPTION": (_("Carrier problem"), _("The carrier reports a problem with the parcel.")),
        "OUT_FOR_DELIVERY": (_("Out for delivery"), _("With the courier for delivery today.")),
        "FAILED_ATTEMPT": (
            _("Delivery failed"),
            _("The courier could not deliver; it will try again."),
        ),
        "AVAILABLE_FOR_PICKUP": (
            _("At a pick-up point"),
            _("Waiting for the cardholder to collect."),
        ),
        "DELIVERED": (_("Delivered"), _("The carrier reports the card delivered.")),
        "RETURNED_TO_SENDER": (_("Returned to sender"), _("The carrier is sending the card back.")),
        "RETURNED": (_("Returned"), _("The carrier brought the card back.")),
    },
    # The class of the carrier's status (tracking.domain.carrier_status), whatever word it used.
    "shipment_class": dict(carrier_status.CLASS_LABELS),
    # Why an order was asked about at D1 (flags set by ingest, and the sweep's own reasons).
    "reconcile_reason": {
        "conflict": (
            _("Conflicting messages"),
            _("D1's messages contradict each other (for example a failure and a shipment)."),
        ),
        # The same hold is "On hold" on every page: lists, order page, calls to D1.
        "unknown_status": (
            _("On hold"),
            _("D1 sent a status code it does not publish (a hold); D1 is asked until it moves on."),
        ),
        "hold_then_progress": (
            _("Progress after a hold"),
            _("A step came with the same times as a hold; only D1 can say whether the hold ended."),
        ),
        "incomplete_item": (
            _("Item without details"),
            _("D1 sent a result for this order without its step; D1 is asked for the whole state."),
        ),
        "gap": (_("Missing steps"), _("Steps between two messages never arrived.")),
        "stage_threshold": (
            _("Too long in a stage"),
            _("The order stayed in its stage longer than the stage's time limit."),
        ),
        "past_due": (
            _("Past its due date"),
            _("D1's expected completion date passed, plus grace."),
        ),
        "awaiting_delivery": (
            _("Awaiting delivery"),
            _("Shipped, and the carrier has not yet reported delivery."),
        ),
        "silent": (
            _("D1 silent"),
            _("A registered order D1 has said nothing about yet."),
        ),
        "cancel_unconfirmed": (
            _("Cancel not confirmed"),
            _("D1 accepted a cancel but has not reported the card cancelled."),
        ),
        "look_up": (_("Looked up"), _("Staff or a command asked D1 about this card.")),
        "": (_("No particular reason"), _("Asked by staff or a command.")),
    },
    # Where an event came from.
    "source": {
        "webhook": (_("Sent by D1"), _("A message D1 sent to the portal.")),
        "on_demand": (
            _("Asked of D1"),
            _("D1's answer when the portal asked for the order's status."),
        ),
    },
    # What one event did to its order.
    "outcome": {
        "advanced": (_("Applied"), _("This event moved the order on.")),
        "shipment_update": (_("Shipment update"), _("A carrier update.")),
        "stale": (_("Out of order"), _("Arrived after a later step; kept, changed nothing.")),
        "unknown_status": (
            _("On hold"),
            _("A status code D1 does not publish (a hold); kept, it does not move the order."),
        ),
        "conflict": (_("Conflict"), _("Contradicts another event of the order.")),
        "no_change": (_("No change"), _("Repeated what the order already said.")),
        "not_tracked": (
            _("Other operation"),
            _("Recorded on the card; not part of the order's state."),
        ),
        "invalid": (_("Invalid"), _("Failed validation; kept with its reason.")),
        "incomplete": (
            _("Item without details"),
            _("A result without its step: its status, error and times count, its step is unknown."),
        ),
        "": (_("Not applied yet"), _("Stored; the order has not been updated from it yet.")),
    },
    # What asking D1 did.
    "reconcile_outcome": {
        "changed": (_("Corrected the order"), _("D1's answer changed the order.")),
        "unchanged": (_("Confirmed"), _("D1 said what the portal already knew.")),
        "not_found": (_("Unknown at D1"), _("D1 does not know this card order.")),
        "error": (_("No answer"), _("The call to D1 failed; see the error.")),
    },
    "reconcile_trigger": {
        "sweep": (_("Automatic check"), _("The regular sweep asked D1.")),
        "staff": (_("Ask D1 now"), _("A staff member asked D1 from the order page or a list.")),
        "command": (_("Command"), _("Asked from the command line.")),
    },
    # The badges in the Flags column.
    "flag": {
        "needs_reconcile": (
            _("Will ask D1"),
            _("The portal will ask D1 for the truth at the next check."),
        ),
        "conflict": (_("Conflict"), _("D1's messages contradict each other.")),
        "unknown_code": (_("Unknown code"), _("D1 sent a code the portal does not know.")),
        "d1_error": (_("D1 error"), _("D1 reported an error for this order.")),
        "on_hold": (_("On hold"), _("D1 put the order on hold with a code it does not publish.")),
        "gap": (_("Missing steps"), _("Steps between two messages never arrived.")),
        "acknowledged": (_("Acknowledged"), _("Staff handled this exception.")),
    },
    # The operator alerts on the dashboard (and `manage.py alerts`, /metrics by code).
    "alert": {
        "inbound_silence": (
            _("D1 is quiet"),
            _(
                "No message from D1 for longer than expected, or registered orders D1 never "
                "mentioned."
            ),
        ),
        "refused_share": (
            _("Many messages refused"),
            _(
                "An unusual share of D1's calls was refused; D1 may be sending what the portal "
                "cannot read, or with the wrong credentials."
            ),
        ),
        "orders_stuck": (
            _("Orders stuck in a stage"),
            _("Orders stayed in a stage longer than its time limit."),
        ),
        "reconcile_failing": (
            _("Asking D1 keeps failing"),
            _("Orders still need checking with D1 after several tries."),
        ),
        "sweep_late": (
            _("Automatic checks not running"),
            _(
                "The regular check with D1 has not succeeded for too long; the scheduler may be "
                "down."
            ),
        ),
        "unapplied_items": (
            _("Messages not applied"),
            _("Received items have not been applied to their orders; the worker may be down."),
        ),
        "event_endpoint_disabled": (
            "Event endpoint disabled",
            "An issuer's system did not accept card-order events for too long; the portal "
            "stopped sending to it.",
        ),
    },
}

UNKNOWN_HELP = _("A code the portal does not know; shown exactly as D1 sent it.")


def label(kind: str, code: str | None) -> Label:
    """The label of `code` in the table `kind`; an unknown code is labelled as unknown."""
    code = code or ""
    entry = LABELS[kind].get(code)
    if entry is None:
        return Label(code=code, text=_("Unknown code"), help=UNKNOWN_HELP, known=False)
    return Label(code=code, text=entry[0], help=entry[1])


def label_text(kind: str, code: str | None) -> str:
    """The label alone, with the code kept when it is unknown (for CSV cells and options)."""
    found = label(kind, code)
    if found.known:
        return str(found.text)
    return gettext("Unknown code %(code)s") % {"code": found.code}


def choices(kind: str) -> list[tuple[str, Promise]]:
    """(code, "Label (CODE)") for a filter's drop-down, in the table's order and the reader's
    language (lazy: filters build their choices once)."""
    return [
        (code, format_lazy("{} ({})", text, code))
        for code, (text, _h) in LABELS[kind].items()
        if code
    ]


def humanize_duration(value: dt.timedelta | None) -> str:
    """'2 d 4 h', '3 h 12 min', '45 min', '30 s': two units are enough to act on."""
    if value is None:
        return ""
    seconds = max(int(value.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        if hours:
            return gettext("%(days)d d %(hours)d h") % {"days": days, "hours": hours}
        return gettext("%(days)d d") % {"days": days}
    if hours:
        if minutes:
            return gettext("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
        return gettext("%(hours)d h") % {"hours": hours}
    if minutes:
        return gettext("%(minutes)d min") % {"minutes": minutes}
    return gettext("%(seconds)d s") % {"seconds": secs}
