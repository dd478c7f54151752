"""Plain-language labels for every code staff meet: statuses, reasons, flags, sources, outcomes.

One table beside the rules (`tracking/rules.py`), so that the back office, its filters and the CSV
export all say the same thing. Each code has a short label and a one-line explanation; the code
itself stays visible as secondary text, because D1's documentation and support speak in codes.
A code that is not in the table is shown as such ("Unknown code"), never dressed up as known.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracking import carrier_status


@dataclass(frozen=True)
class Label:
    code: str
    text: str
    help: str
    known: bool = True


# kind -> code -> (label, one-line explanation)
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    # details.status (SPEC §2.1): where the card is in production.
    "production_status": {
        "CARD_PROD_REQUESTED": ("Requested", "The card was ordered through D1's APIs."),
        "DATA_PREPARED": ("Data prepared", "D1 processed the card data successfully."),
        "CARD_PROD_READY": (
            "Ready to personalise",
            "The data reached the personalisation centre; the card is ready to be made.",
        ),
        "CARD_PROD_ONGOING": ("Being personalised", "The card is being made."),
        "CARD_PROD_DONE": (
            "Personalised",
            "The card is made and waits to be prepared for shipment.",
        ),
        "CARD_SHIPPED": ("Shipped", "The card was handed to the carrier."),
        "CARD_RETURNED": ("Returned", "The carrier brought the card back."),
        "DATA_EXCEPTION": (
            "Data rejected",
            "D1 could not process the card data; the card is rejected.",
        ),
        "CARD_PROD_EXCEPTION": (
            "Production failed",
            "Personalisation hit a problem; the card was not made.",
        ),
        "CARD_PROD_CANCELED": ("Cancelled", "Cancelled at the issuer's request."),
        "": ("No known status", "Only codes the portal does not know have arrived so far."),
    },
    # The operation's own status (top-level `status`).
    "operation_status": {
        "PENDING": ("In progress", "D1 is still working on this order."),
        "SUCCESSFUL": ("Succeeded", "D1 finished this operation successfully."),
        "FAILED": ("Failed", "D1 reports the operation failed; see the error and reason."),
    },
    "operation": {
        "PRODUCE": ("Card production", "A card made and shipped by Thales."),
        "STANDALONE_TRACKING": (
            "Tracking only",
            "A card made elsewhere; D1 forwards the carrier's updates.",
        ),
        "UPDATE_ORDER": ("Order change", "A change to the order requested before shipment."),
    },
    # details.shipment.status: D1 publishes no list; these are the common carrier milestones.
    "shipment_status": {
        "LABEL_CREATED": ("Label created", "The carrier has the parcel's details, not the parcel."),
        "INFO_RECEIVED": ("Details received", "The carrier has the parcel's details."),
        "PENDING": ("Awaiting carrier", "The carrier has not picked the parcel up yet."),
        "PICKED_UP": ("Picked up", "The carrier has the parcel."),
        "IN_TRANSIT": ("In transit", "On its way."),
        "DELAYED": ("Delayed", "The carrier reports a delay."),
        "EXCEPTION": ("Carrier problem", "The carrier reports a problem with the parcel."),
        "OUT_FOR_DELIVERY": ("Out for delivery", "With the courier for delivery today."),
        "FAILED_ATTEMPT": ("Delivery failed", "The courier could not deliver; it will try again."),
        "AVAILABLE_FOR_PICKUP": ("At a pick-up point", "Waiting for the cardholder to collect."),
        "DELIVERED": ("Delivered", "The carrier reports the card delivered."),
        "RETURNED_TO_SENDER": ("Returned to sender", "The carrier is sending the card back."),
        "RETURNED": ("Returned", "The carrier brought the card back."),
    },
    # The class of the carrier's status (tracking.carrier_status), whatever word it used.
    "shipment_class": dict(carrier_status.CLASS_LABELS),
    # Why an order was asked about at D1 (flags set by ingest, and the sweep's own reasons).
    "reconcile_reason": {
        "conflict": (
            "Conflicting messages",
            "D1's messages contradict each other (for example a failure and a shipment).",
        ),
        "unknown_status": ("Unknown code", "D1 sent a status code the portal does not know."),
        "hold_then_progress": (
            "Progress after a hold",
            "A step came with the same times as a hold; only D1 can say whether the hold ended.",
        ),
        "incomplete_item": (
            "Item without details",
            "D1 sent a result for this order without its step; D1 is asked for the whole state.",
        ),
        "gap": ("Missing steps", "Steps between two messages never arrived."),
        "stage_threshold": (
            "Too long in a stage",
            "The order stayed in its stage longer than the stage's time limit.",
        ),
        "past_due": ("Past its due date", "D1's expected completion date passed, plus grace."),
        "awaiting_delivery": (
            "Awaiting delivery",
            "Shipped, and the carrier has not yet reported delivery.",
        ),
        "": ("No particular reason", "Asked by staff or a command."),
    },
    # Where an event came from.
    "source": {
        "webhook": ("Sent by D1", "A message D1 sent to the portal."),
        "on_demand": ("Asked of D1", "D1's answer when the portal asked for the order's status."),
    },
    # What one event did to its order.
    "outcome": {
        "advanced": ("Applied", "This event moved the order on."),
        "shipment_update": ("Shipment update", "A carrier update."),
        "stale": ("Out of order", "Arrived after a later step; kept, changed nothing."),
        "unknown_status": ("Unknown code", "A code the portal does not know; kept, not applied."),
        "conflict": ("Conflict", "Contradicts another event of the order."),
        "no_change": ("No change", "Repeated what the order already said."),
        "not_tracked": ("Other operation", "Recorded on the card; not part of the order's state."),
        "invalid": ("Invalid", "Failed validation; kept with its reason."),
        "incomplete": (
            "Item without details",
            "A result without its step: its status, error and times count, its step is unknown.",
        ),
        "": ("Not applied yet", "Stored; the order has not been updated from it yet."),
    },
    # What asking D1 did.
    "reconcile_outcome": {
        "changed": ("Corrected the order", "D1's answer changed the order."),
        "unchanged": ("Confirmed", "D1 said what the portal already knew."),
        "not_found": ("Unknown at D1", "D1 does not know this card order."),
        "error": ("No answer", "The call to D1 failed; see the error."),
    },
    "reconcile_trigger": {
        "sweep": ("Automatic check", "The regular sweep asked D1."),
        "staff": ("Ask D1 now", "A staff member asked D1 from the order page or a list."),
        "command": ("Command", "Asked from the command line."),
    },
    # The badges in the Flags column.
    "flag": {
        "needs_reconcile": (
            "Will ask D1",
            "The portal will ask D1 for the truth at the next check.",
        ),
        "conflict": ("Conflict", "D1's messages contradict each other."),
        "unknown_code": ("Unknown code", "D1 sent a code the portal does not know."),
        "d1_error": ("D1 error", "D1 reported an error for this order."),
        "on_hold": ("On hold", "D1 put the order on hold with a code it does not publish."),
        "gap": ("Missing steps", "Steps between two messages never arrived."),
        "acknowledged": ("Acknowledged", "Staff handled this exception."),
    },
    # The operator alerts on the dashboard (and `manage.py alerts`, /metrics by code).
    "alert": {
        "inbound_silence": (
            "D1 is quiet",
            "No message from D1 for longer than expected, or registered orders D1 never mentioned.",
        ),
        "refused_share": (
            "Many messages refused",
            "An unusual share of D1's calls was refused; D1 may be sending what the portal "
            "cannot read, or with the wrong credentials.",
        ),
        "orders_stuck": (
            "Orders stuck in a stage",
            "Orders stayed in a stage longer than its time limit.",
        ),
        "reconcile_failing": (
            "Asking D1 keeps failing",
            "Orders still need checking with D1 after several tries.",
        ),
        "sweep_late": (
            "Automatic checks not running",
            "The regular check with D1 has not succeeded for too long; the scheduler may be down.",
        ),
        "unapplied_items": (
            "Messages not applied",
            "Received items have not been applied to their orders; the worker may be down.",
        ),
        "event_endpoint_disabled": (
            "Event endpoint disabled",
            "An issuer's system did not accept card-order events for too long; the portal "
            "stopped sending to it.",
        ),
    },
}

UNKNOWN_HELP = "A code the portal does not know; shown exactly as D1 sent it."


def label(kind: str, code: str | None) -> Label:
    """The label of `code` in the table `kind`; an unknown code is labelled as unknown."""
    code = code or ""
    entry = LABELS[kind].get(code)
    if entry is None:
        return Label(code=code, text="Unknown code", help=UNKNOWN_HELP, known=False)
    return Label(code=code, text=entry[0], help=entry[1])


def label_text(kind: str, code: str | None) -> str:
    """The label alone, with the code kept when it is unknown (for CSV cells and options)."""
    found = label(kind, code)
    return found.text if found.known else f"Unknown code {found.code}"


def choices(kind: str) -> list[tuple[str, str]]:
    """(code, "Label (CODE)") for a filter's drop-down, in the table's order."""
    return [(code, f"{text} ({code})") for code, (text, _) in LABELS[kind].items() if code]


def humanize_duration(value: dt.timedelta | None) -> str:
    """'2 d 4 h', '3 h 12 min', '45 min', '30 s': two units are enough to act on."""
    if value is None:
        return ""
    seconds = max(int(value.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"
