"""What the order page shows: the two-lane timeline of events and the time spent in each stage.

Pure presentation of stored facts: nothing here writes. The lanes follow D1's two streams of
news about a card, production steps (`details.status`) and carrier updates (`details.shipment`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.utils import formats
from django.utils.functional import Promise
from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from tracking.domain import stage_limits
from tracking.domain.carriers import carrier_name
from tracking.domain.d1_items import shipment_of
from tracking.domain.fold import Outcome
from tracking.domain.statuses import TRACKED_OPERATIONS, production_rank
from tracking.domain.times import lacks_zone, parse_time
from tracking.models import CardOrder, OperationEvent


@dataclass(frozen=True)
class Marker:
    """A fact about an event worth a label: always text, the tone only reinforces it."""

    code: str
    label: str | Promise  # in the reader's language
    tone: str  # success / info / warning / danger / neutral
    title: str | Promise = ""


@dataclass(frozen=True)
class D1Time:
    """A time D1 sent on an item, as the portal read it; `assumed` when it had no zone."""

    name: str  # startTime / endTime
    value: dt.datetime
    assumed: bool


@dataclass
class TimelineEntry:
    event: OperationEvent
    in_production_lane: bool
    in_shipment_lane: bool
    markers: list[Marker] = field(default_factory=list)
    # Every time D1 sent on the item, read in the issuer's zone when it had none.
    d1_times: list[D1Time] = field(default_factory=list)

    @property
    def shipment(self) -> dict:
        return _shipment_of(self.event)

    @property
    def carrier_name(self) -> str:
        return carrier_name(str(self.shipment.get("carrier") or ""))

    @property
    def raw_json(self) -> str:
        return json.dumps(self.event.payload, indent=2, sort_keys=True, ensure_ascii=False)


_OUTCOME_MARKERS = {
    Outcome.ADVANCED: Marker(
        "advanced", _("Applied"), "success", _("This event moved the order on.")
    ),
    Outcome.SHIPMENT_UPDATE: Marker("shipment", _("Shipment update"), "info"),
    Outcome.STALE: Marker(
        "stale",
        _("Stale · out of order"),
        "warning",
        _("Earlier than the current state by D1's times or step; it changed nothing."),
    ),
    # The same hold is "On hold" on every page.
    Outcome.UNKNOWN_STATUS: Marker(
        "unknown",
        _("On hold"),
        "warning",
        _("A status code D1 does not publish (a hold); kept and flagged."),
    ),
    Outcome.INCOMPLETE: Marker(
        "incomplete",
        _("No details"),
        "warning",
        _("No details.status: its status, error and times count; D1 is asked for the rest."),
    ),
    Outcome.CONFLICT: Marker(
        "conflict",
        _("Conflict"),
        "danger",
        _("It contradicts another event; sent to reconciliation."),
    ),
    Outcome.NO_CHANGE: Marker("no_change", _("No change"), "neutral"),
    Outcome.NOT_TRACKED: Marker("other", _("Other operation"), "neutral"),
    Outcome.INVALID: Marker("invalid", _("Invalid"), "danger"),
}


def timeline_entries(
    events: Iterable[OperationEvent], *, zone: dt.tzinfo = dt.UTC
) -> list[TimelineEntry]:
    """Each event once, in arrival order, placed in the production lane, the shipment lane or both.

    A step that first reports a shipment (CARD_SHIPPED with carrier data) shows in both lanes;
    later carrier updates show in the shipment lane only. A time D1 sent without a zone is
    read in `zone` (the issuer's) and marked as assumed.
    """
    entries = []
    for event in events:
        has_shipment = bool(_shipment_of(event))
        pure_shipment_news = has_shipment and event.outcome in (
            Outcome.SHIPMENT_UPDATE,
            Outcome.NO_CHANGE,
        )
        entry = TimelineEntry(
            event=event,
            in_production_lane=not pure_shipment_news,
            in_shipment_lane=has_shipment,
        )
        entry.markers = _markers(event)
        entry.d1_times = _d1_times(event, zone=zone)
        if any(t.assumed for t in entry.d1_times):
            entry.markers.append(
                Marker(
                    "zone_assumed",
                    gettext("Zone assumed: %(zone)s") % {"zone": zone},
                    "warning",
                    gettext("D1 sent this time without a zone; it is read in the issuer's zone."),
                )
            )
        entries.append(entry)
    return entries


def _d1_times(event: OperationEvent, *, zone: dt.tzinfo) -> list[D1Time]:
    payload = event.payload if isinstance(event.payload, dict) else {}
    times = []
    for name in ("startTime", "endTime"):
        value = parse_time(payload.get(name), zone)
        if value is not None:
            times.append(D1Time(name, value, lacks_zone(payload.get(name))))
    return times


def _shipment_of(event: OperationEvent) -> dict:
    return shipment_of(event.payload)


def _markers(event: OperationEvent) -> list[Marker]:
    markers = []
    outcome = _OUTCOME_MARKERS.get(event.outcome)
    if outcome is not None:
        if event.outcome == Outcome.INVALID and event.validation_error:
            outcome = Marker("invalid", _("Invalid"), "danger", event.validation_error)
        markers.append(outcome)
    elif not event.applied_at:
        markers.append(Marker("pending", _("Not applied yet"), "neutral"))
    if (
        event.operation in TRACKED_OPERATIONS
        and event.production_status
        and production_rank(event.production_status) is None
        and event.outcome != Outcome.UNKNOWN_STATUS
    ):
        markers.append(Marker("unknown", _("Unknown code"), "warning"))
    change = getattr(event, "change", None)  # a pull & change result (UPDATE_ORDER)
    if change is not None:
        markers.append(change_marker(change))
    if event.times_received > 1:
        markers.append(
            Marker(
                "duplicate",
                _("Received %(count)s times") % {"count": event.times_received},
                "info",
                _("Last received %(moment)s")
                % {
                    "moment": formats.date_format(
                        localtime(event.last_received_at), "DATETIME_FORMAT"
                    )
                },
            )
        )
    return markers


_CHANGE_TONES = {"accepted": "success", "rejected": "danger", "pending": "info"}


def change_marker(change) -> Marker:
    """A pull & change result as a label: "CANCEL accepted", or "Unknown change shape"."""
    if not change.is_known_shape:
        return Marker(
            "change_unknown",
            _("Unknown change shape"),
            "warning",
            _("An UPDATE_ORDER the portal cannot fully read; kept as it came."),
        )
    return Marker(
        "change",
        f"{change.change_type} {change.get_result_display().lower()}",
        _CHANGE_TONES.get(change.result, "neutral"),
        change.reason,
    )


@dataclass(frozen=True)
class StageSpan:
    status: str
    entered_at: dt.datetime
    duration: dt.timedelta | None  # None: the order is still there and the stage is final
    is_current: bool
    threshold: dt.timedelta | None
    over_threshold: bool


def stage_spans(order: CardOrder, *, now: dt.datetime) -> list[StageSpan]:
    """Every stage the order was seen in, with how long it stayed (until the next one began)."""
    seen = sorted(
        (
            (dt.datetime.fromisoformat(at), status)
            for status, at in (order.stage_first_seen or {}).items()
            if isinstance(at, str)
        ),
        key=lambda pair: (pair[0], production_rank(pair[1]) or 0),
    )
    thresholds = stage_limits.stage_thresholds()
    spans = []
    for index, (entered_at, status) in enumerate(seen):
        is_current = status == order.production_status
        if index + 1 < len(seen):
            duration = seen[index + 1][0] - entered_at
        elif is_current and not order.is_terminal:
            duration = now - entered_at
        else:
            duration = None
        threshold = thresholds.get(status)
        spans.append(
            StageSpan(
                status=status,
                entered_at=entered_at,
                duration=duration,
                is_current=is_current,
                threshold=threshold,
                over_threshold=bool(threshold and duration and duration > threshold),
            )
        )
    return spans
