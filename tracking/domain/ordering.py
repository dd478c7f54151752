"""One stored event as the fold sees it (`EventFacts`), and the order of events by D1's times."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tracking.domain import carrier_status
from tracking.domain.statuses import (
    COMPLETED_STATUSES,
    FINAL_SHIPMENT_CLASSES,
    NO_SHIPMENT_STATUS_RANK,
    OPERATION_STATUS_RANK,
    production_rank,
    shipment_class,
)
from tracking.domain.times import parse_time

_NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


def item_text(item: Mapping[str, Any], details: Mapping[str, Any], name: str) -> str:
    """A field D1 sends either at the top level or inside `details`; the top level wins."""
    for source in (item, details):
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


@dataclass(frozen=True)
class EventFacts:
    """What the fold needs to know about one stored event."""

    key: Any
    fingerprint: str
    first_received_at: dt.datetime
    last_received_at: dt.datetime
    payload: Mapping[str, Any]
    # The zone a time without one is read in: the issuer's (`derive_order_state(zone=...)`).
    zone: dt.tzinfo = dt.UTC

    @cached_property
    def details(self) -> Mapping[str, Any]:
        details = self.payload.get("details")
        return details if isinstance(details, dict) else {}

    @property
    def production_status(self) -> str:
        status = self.details.get("status")
        return status if isinstance(status, str) else ""

    @property
    def operation_status(self) -> str:
        status = self.payload.get("status")
        return status if isinstance(status, str) else ""

    @property
    def shipment(self) -> Mapping[str, Any] | None:
        shipment = self.details.get("shipment")
        return shipment if isinstance(shipment, dict) else None

    @cached_property
    def rank(self) -> int | None:
        return production_rank(self.production_status)

    @property
    def is_incomplete(self) -> bool:
        """No `details.status`: correlatable, but it does not say which step it is about."""
        return not self.production_status

    @cached_property
    def start_time(self) -> dt.datetime | None:
        return parse_time(self.payload.get("startTime"), self.zone)

    @cached_property
    def end_time(self) -> dt.datetime | None:
        return parse_time(self.payload.get("endTime"), self.zone)

    @cached_property
    def carrier_class(self) -> str:
        return shipment_class(self.shipment)

    @property
    def is_completion(self) -> bool:
        return self.end_time is not None and self.operation_status in COMPLETED_STATUSES

    def time_key(self) -> tuple:
        """D1's own order: with endTime after without, then endTime, then startTime."""
        return (
            self.end_time is not None,
            self.end_time or _NO_TIME,
            self.start_time or _NO_TIME,
        )

    def latest_key(self) -> tuple:
        """Which event is latest: D1's times; on a tie of times, ranks; then the content."""
        return (
            *self.time_key(),
            OPERATION_STATUS_RANK.get(self.operation_status, -1),
            self.rank if self.rank is not None else -1,
            carrier_status.class_rank(self.carrier_class)
            if self.carrier_class
            else NO_SHIPMENT_STATUS_RANK,
            self.fingerprint,
        )

    def shipment_key(self) -> tuple:
        """Which carrier update is current: a final class (delivered, returned) stays, whatever
        comes later; otherwise the latest by D1's times, the class's rank breaking a tie."""
        return (self.carrier_class in FINAL_SHIPMENT_CLASSES, *self.latest_key())

    def arrival_key(self) -> tuple:
        """The order the portal received events in: only for the timeline and stage times."""
        return (self.first_received_at, self.fingerprint)
