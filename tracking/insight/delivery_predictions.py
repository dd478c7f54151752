"""When a shipped card should arrive: D1's own date when it sends one, else the portal's history.

D1 documents `details.shipment` only up to `trackingUrl` and says more keys may come (SPEC §2.3,
§9 row 9). The first of `D1_DELIVERY_DATE_KEYS` that holds a date or a date-time is taken as
D1's expected delivery; `D1_DELIVERY_WINDOW_KEYS` name a window ({"from", "to"} or
{"start", "end"}) when D1 sends one instead.

Otherwise the expectation comes from the portal's history, like the production predictions
(`services.predictions`): for the last `HISTORY_ORDERS` delivered orders of the same carrier
(and destination, when D1 names one in `details.shipment`), the time from the first
`CARD_SHIPPED` to the first delivered carrier update; the expected date is the median after the
order shipped, the range its 10th to 90th percentile. Dates are days in the reader's zone.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from tracking.domain import carrier_status
from tracking.domain.carriers import carrier_name
from tracking.domain.d1_items import shipment_of
from tracking.domain.statuses import DELIVERED_SHIPMENT_CLASSES, SHIPPED_STATUS
from tracking.domain.times import parse_time
from tracking.models import CardOrder, OperationEvent

D1_DELIVERY_DATE_KEYS = (
    "expectedDeliveryDate",
    "expectedDelivery",
    "estimatedDeliveryDate",
    "estimatedDelivery",
    "expectedDeliveryTime",
    "estimatedDeliveryTime",
    "eta",
)
D1_DELIVERY_WINDOW_KEYS = ("expectedDeliveryWindow", "estimatedDeliveryWindow", "deliveryWindow")
DESTINATION_KEYS = ("destinationCountry", "destination", "destinationPostalCode")
HISTORY_ORDERS = 300
MIN_SAMPLES = 5


@dataclass(frozen=True)
class ExpectedDelivery:
    """An expected delivery day and its range; `source` is "d1" or "history"."""

    expected: dt.date
    earliest: dt.date
    latest: dt.date
    source: str
    basis: str


@dataclass(frozen=True)
class CarrierUpdate:
    """One carrier update D1 sent for the order, with D1's time and the portal's."""

    status: str  # the carrier's word as D1 sent it
    status_class: str  # what it means (`tracking.domain.carrier_status`)
    message: str
    location: str
    d1_time: dt.datetime | None
    received_at: dt.datetime
    times_received: int


def _as_day(value) -> dt.date | None:
    """A day from D1's text: `2026-12-08`, an ISO date-time (in the reader's zone), else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if len(text) > 10:
        moment = parse_time(text)
        return timezone.localtime(moment).date() if moment is not None else None
    try:
        return parse_date(text)
    except ValueError:
        return None


def d1_expected_delivery(shipment: dict | None) -> ExpectedDelivery | None:
    """The expected delivery D1 sent in `details.shipment`, or None when it sent none."""
    if not isinstance(shipment, dict):
        return None
    for key in D1_DELIVERY_WINDOW_KEYS:
        window = shipment.get(key)
        if isinstance(window, dict):
            start = _as_day(window.get("from") or window.get("start"))
            end = _as_day(window.get("to") or window.get("end"))
            if start and end:
                start, end = min(start, end), max(start, end)
                return ExpectedDelivery(end, start, end, "d1", _("D1 (%(key)s)") % {"key": key})
    for key in D1_DELIVERY_DATE_KEYS:
        day = _as_day(shipment.get(key))
        if day is not None:
            return ExpectedDelivery(day, day, day, "d1", _("D1 (%(key)s)") % {"key": key})
    return None


def _destination(shipment: dict | None) -> tuple[str, str] | None:
    if not isinstance(shipment, dict):
        return None
    for key in DESTINATION_KEYS:
        value = shipment.get(key)
        if isinstance(value, str) and value.strip():
            return key, value.strip()
    return None


def _shipped_at(stage_first_seen: dict | None) -> dt.datetime | None:
    first = (stage_first_seen or {}).get(SHIPPED_STATUS)
    return parse_time(first) if isinstance(first, str) else None


def transit_times(
    *, carrier: str, destination: tuple[str, str] | None = None
) -> list[dt.timedelta]:
    """Shipped → delivered of the last `HISTORY_ORDERS` delivered orders of `carrier`.

    One query: the orders newest first (the `order_recent` index walk), each with its first
    delivered carrier update (the `event_order_timeline` index). Reads only.
    """
    delivered = CardOrder.objects.filter(
        carrier=carrier, shipment_class__in=sorted(DELIVERED_SHIPMENT_CLASSES)
    )
    if destination is not None:
        key, value = destination
        delivered = delivered.filter(**{f"shipment__{key}": value})
    first_delivered = (
        # The first event with the carrier's own delivered word (its class is the order's).
        OperationEvent.objects.filter(
            order=OuterRef("pk"), shipment_status=OuterRef("shipment_status")
        )
        .order_by("first_received_at")
        .values("first_received_at")[:1]
    )
    rows = (
        delivered.annotate(delivered_at=Subquery(first_delivered))
        .order_by("-updated_at", "-id")
        .values_list("stage_first_seen", "delivered_at")[:HISTORY_ORDERS]
    )
    spans = []
    for first_seen, delivered_at in rows:
        shipped = _shipped_at(first_seen)
        if shipped is not None and delivered_at is not None and delivered_at >= shipped:
            spans.append(delivered_at - shipped)
    return spans


def _quantiles(spans: list[dt.timedelta]) -> tuple[dt.timedelta, dt.timedelta, dt.timedelta]:
    seconds = sorted(span.total_seconds() for span in spans)
    cuts = statistics.quantiles(seconds, n=10, method="inclusive")
    return (
        dt.timedelta(seconds=cuts[0]),
        dt.timedelta(seconds=statistics.median(seconds)),
        dt.timedelta(seconds=cuts[-1]),
    )


def order_expected_delivery(order: CardOrder) -> ExpectedDelivery | None:
    """When the order's card should arrive; None once delivered, before shipping, or unknown."""
    if order.shipment_class in DELIVERED_SHIPMENT_CLASSES:
        return None
    from_d1 = d1_expected_delivery(order.shipment)
    if from_d1 is not None:
        return from_d1
    shipped = _shipped_at(order.stage_first_seen)
    if shipped is None or not order.carrier:
        return None
    destination = _destination(order.shipment)
    spans = transit_times(carrier=order.carrier, destination=destination) if destination else []
    basis_destination = destination[1] if destination and len(spans) >= MIN_SAMPLES else ""
    if len(spans) < MIN_SAMPLES:
        spans = transit_times(carrier=order.carrier)
    if len(spans) < MIN_SAMPLES:
        return None
    early, middle, late = _quantiles(spans)
    name = carrier_name(order.carrier)
    basis = (
        _("%(count)d recent deliveries by %(carrier)s to %(destination)s")
        % {"count": len(spans), "carrier": name, "destination": basis_destination}
        if basis_destination
        else _("%(count)d recent deliveries by %(carrier)s")
        % {"count": len(spans), "carrier": name}
    )
    return ExpectedDelivery(
        expected=timezone.localtime(shipped + middle).date(),
        earliest=timezone.localtime(shipped + early).date(),
        latest=timezone.localtime(shipped + late).date(),
        source="history",
        basis=basis,
    )


def carrier_updates(order: CardOrder, events: list[OperationEvent]) -> list[CarrierUpdate]:
    """Every carrier update D1 sent for the order (each distinct item once), oldest first.

    `events` is the order page's timeline (already read): no query of its own.
    """
    updates = []
    for event in sorted(events, key=lambda e: (e.first_received_at, e.pk)):
        if event.order_id != order.pk or not event.shipment_status:
            continue
        payload = event.payload if isinstance(event.payload, dict) else {}
        shipment = shipment_of(payload)
        d1_time = parse_time(payload.get("endTime")) or parse_time(payload.get("startTime"))
        location = shipment.get("location") or shipment.get("city") or ""
        updates.append(
            CarrierUpdate(
                status=event.shipment_status,
                status_class=carrier_status.carrier_status_class(event.shipment_status),
                message=str(shipment.get("message") or ""),
                location=location if isinstance(location, str) else "",
                d1_time=d1_time,
                received_at=event.first_received_at,
                times_received=event.times_received,
            )
        )
    return updates
