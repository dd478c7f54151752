"""The rules that turn a card order's set of notification items into one trustworthy state.

Everything that decides what an order looks like lives here, as plain data and pure functions:
the rank tables, the terminal set, the canonical order of events, the fold, the flags and what
each event did. The services load events, call `derive_order_state`, and save what it returns.

Decisions (SPEC §3, §7 and DESIGN §3; ASSUMPTION where D1 publishes nothing):
- production progress is ranked; a lower step after a higher one is stale and changes nothing;
- the failures DATA_EXCEPTION, CARD_PROD_EXCEPTION and CARD_PROD_CANCELED outrank every step of
  the normal path and are sticky; a failure together with CARD_SHIPPED (or CARD_RETURNED), or two
  different failures, is a conflict: the failure is shown and the order is flagged;
- CARD_SHIPPED ends production (terminal) but later carrier updates still apply;
- an unknown `details.status` or carrier status is kept and flagged but never moves the state;
- a jump over steps of the PRODUCE path between the lowest and highest step seen is a gap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------- tables

# details.status → rank. Normal path from SPEC §3; failures above every normal step, each with
# its own rank so that two different failures still fold the same way in any order.
PRODUCTION_RANK: Mapping[str, int] = {
    "CARD_PROD_REQUESTED": 10,
    "DATA_PREPARED": 20,
    "CARD_PROD_READY": 30,
    "CARD_PROD_ONGOING": 40,
    "CARD_PROD_DONE": 50,
    "CARD_SHIPPED": 60,
    "CARD_RETURNED": 70,  # tracking hub RETURN
    "DATA_EXCEPTION": 100,
    "CARD_PROD_EXCEPTION": 101,
    "CARD_PROD_CANCELED": 102,
}
FAILURE_STATUSES = frozenset({"DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_CANCELED"})
SHIPPED_STATUSES = frozenset({"CARD_SHIPPED", "CARD_RETURNED"})
TERMINAL_STATUSES = FAILURE_STATUSES | SHIPPED_STATUSES

# The central-issuance PRODUCE path, used to see steps that were skipped.
PRODUCE_PATH: tuple[str, ...] = (
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
    "CARD_SHIPPED",
)

# Carrier statuses inside details.shipment.status are not published by D1 (SPEC §2.3). These are
# the common carrier milestones; an unknown one is kept, flagged, and ranked as "in transit" so
# that it replaces earlier milestones but never a delivery.
SHIPMENT_STATUS_RANK: Mapping[str, int] = {
    "LABEL_CREATED": 10,
    "INFO_RECEIVED": 10,
    "PENDING": 10,
    "PICKED_UP": 20,
    "IN_TRANSIT": 30,
    "DELAYED": 35,
    "EXCEPTION": 35,
    "OUT_FOR_DELIVERY": 40,
    "FAILED_ATTEMPT": 45,
    "DELIVERY_FAILED": 45,
    "UNDELIVERABLE": 45,
    "AVAILABLE_FOR_PICKUP": 50,
    "DELIVERED": 90,
    "RETURNED_TO_SENDER": 95,
    "RETURNED": 95,
}
UNKNOWN_SHIPMENT_RANK = 30
NO_SHIPMENT_STATUS_RANK = 0
# Carrier statuses after which nothing more is expected from the carrier.
FINAL_SHIPMENT_STATUSES = frozenset({"DELIVERED", "RETURNED_TO_SENDER", "RETURNED"})
# After-shipment classes of the carrier status (the queues of tracking.services.order_queues).
DELIVERED_SHIPMENT_STATUSES = frozenset({"DELIVERED"})
RETURNED_SHIPMENT_STATUSES = frozenset({"RETURNED_TO_SENDER", "RETURNED"})
DELIVERY_FAILED_SHIPMENT_STATUSES = frozenset(
    {"FAILED_ATTEMPT", "DELIVERY_FAILED", "UNDELIVERABLE"}
)

# Operations whose items make up a card order; any other operation (UPDATE_ORDER, ...) is stored
# and shown on the card's timeline without touching an order.
TRACKED_OPERATIONS = frozenset({"PRODUCE", "STANDALONE_TRACKING"})


class Outcome:
    """What one event did to its order's state (stored on the event, shown on the timeline)."""

    ADVANCED = "advanced"
    SHIPMENT_UPDATE = "shipment_update"
    STALE = "stale"
    UNKNOWN_STATUS = "unknown_status"
    CONFLICT = "conflict"
    NO_CHANGE = "no_change"
    NOT_TRACKED = "not_tracked"  # an operation that is not a card order (UPDATE_ORDER, ...)
    INVALID = "invalid"  # failed validation; kept with its reason

    CHOICES = [
        (ADVANCED, "Advanced the state"),
        (SHIPMENT_UPDATE, "Shipment update"),
        (STALE, "Stale (arrived after a later step)"),
        (UNKNOWN_STATUS, "Unknown status code"),
        (CONFLICT, "Conflict"),
        (NO_CHANGE, "No change"),
        (NOT_TRACKED, "Other operation (recorded)"),
        (INVALID, "Invalid item"),
    ]


class ReconcileReason:
    """Why an order needs the truth from D1, highest priority first."""

    CONFLICT = "conflict"
    UNKNOWN_STATUS = "unknown_status"
    GAP = "gap"

    PRIORITY = (CONFLICT, UNKNOWN_STATUS, GAP)
    CHOICES = [(CONFLICT, "Conflict"), (UNKNOWN_STATUS, "Unknown status"), (GAP, "Gap")]


# ---------------------------------------------------------------------------- helpers


def production_rank(status: str) -> int | None:
    """The rank of a `details.status`, or None for a code the portal does not know."""
    return PRODUCTION_RANK.get(status)


def shipment_rank(shipment: Mapping[str, Any] | None) -> int:
    if not shipment or not shipment.get("status"):
        return NO_SHIPMENT_STATUS_RANK
    return SHIPMENT_STATUS_RANK.get(shipment["status"], UNKNOWN_SHIPMENT_RANK)


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 time as an aware datetime (naive times are taken as UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_date(value: Any) -> dt.date | None:
    """`dueDate` is a date or a date-time (SPEC §2.2, ASSUMPTION); either gives a date."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        parsed = parse_time(value)
        return parsed.date() if parsed else None


def _text(item: Mapping[str, Any], details: Mapping[str, Any], name: str) -> str:
    """A field D1 sends either at the top level or inside `details`; the top level wins."""
    for source in (item, details):
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


# ---------------------------------------------------------------------------- the fold


@dataclass(frozen=True)
class EventFacts:
    """What the fold needs to know about one stored event."""

    key: Any
    fingerprint: str
    first_received_at: dt.datetime
    last_received_at: dt.datetime
    payload: Mapping[str, Any]

    @property
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

    @property
    def rank(self) -> int | None:
        return production_rank(self.production_status)

    def canonical_key(self) -> tuple:
        """Production rank, then carrier-status rank, then first receipt, then fingerprint."""
        return (
            self.rank if self.rank is not None else -1,
            shipment_rank(self.shipment),
            self.first_received_at,
            self.fingerprint,
        )

    def arrival_key(self) -> tuple:
        return (self.first_received_at, self.fingerprint)


@dataclass
class OrderState:
    """The derived state of one card order; field names match `CardOrder` columns."""

    operation: str = ""
    operation_status: str = ""
    production_status: str = ""
    production_rank: int | None = None
    is_terminal: bool = False
    tracking_type: str = ""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    issuer_request_id: str = ""
    input_file_name: str = ""
    production_site: str = ""
    due_date: dt.date | None = None
    reason: str = ""
    error_code: str = ""
    error: str = ""
    shipment: dict | None = None
    has_conflict: bool = False
    unknown_codes: list[str] = field(default_factory=list)
    missing_steps: list[str] = field(default_factory=list)
    # Arrival-time facts: they depend on when items came, not on what they say.
    stage_first_seen: dict[str, str] = field(default_factory=dict)
    stage_entered_at: dt.datetime | None = None
    first_event_at: dt.datetime | None = None
    last_event_at: dt.datetime | None = None
    event_count: int = 0
    state_fingerprint: str = ""
    outcomes: dict[Any, str] = field(default_factory=dict)

    @property
    def shipment_final(self) -> bool:
        return bool(self.shipment) and self.shipment.get("status") in FINAL_SHIPMENT_STATUSES

    def content(self) -> dict[str, Any]:
        """The state without arrival-time facts: equal for any order of arrival of one set."""
        skip = {"stage_first_seen", "stage_entered_at", "first_event_at", "last_event_at"}
        skip |= {"outcomes"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def derive_order_state(events: Iterable[EventFacts]) -> OrderState:
    """Fold an order's events into its state; a pure function of the set of events."""
    events = sorted(events, key=EventFacts.canonical_key)
    state = OrderState(event_count=len(events))
    if not events:
        return state

    known = [e for e in events if e.rank is not None]
    failures = [e for e in known if e.production_status in FAILURE_STATUSES]
    shipped = [e for e in known if e.production_status in SHIPPED_STATUSES]

    # The event whose status the order shows: the highest in canonical order; a failure
    # therefore wins over any step of the normal path.
    winner = known[-1] if known else None
    if winner is not None:
        state.production_status = winner.production_status
        state.production_rank = winner.rank
        state.operation_status = winner.operation_status
        state.is_terminal = winner.production_status in TERMINAL_STATUSES
        state.reason = _text(winner.payload, winner.details, "reason")
        state.error_code = _text(winner.payload, {}, "errorCode")
        state.error = _text(winner.payload, {}, "error")
        state.end_time = parse_time(winner.payload.get("endTime"))
        state.state_fingerprint = winner.fingerprint

    # Descriptive fields: the latest non-empty value in canonical order, so a step that lacks
    # a field does not blank what an earlier step said.
    for event in events:
        payload, details = event.payload, event.details
        if isinstance(payload.get("operation"), str):
            state.operation = payload["operation"]
        if event.rank is None:
            continue
        for name, column in (
            ("issuerRequestId", "issuer_request_id"),
            ("inputFileName", "input_file_name"),
            ("productionSite", "production_site"),
            ("trackingType", "tracking_type"),
        ):
            value = _text(payload, details, name)
            if value:
                setattr(state, column, value)
        start = parse_time(payload.get("startTime"))
        if start is not None:
            state.start_time = start
        due = parse_date(details.get("dueDate"))
        if due is not None:
            state.due_date = due
        if event.shipment is not None:
            state.shipment = dict(event.shipment)

    state.has_conflict = (bool(failures) and bool(shipped)) or (
        len({e.production_status for e in failures}) > 1
    )
    unknown = {e.production_status or "(none)" for e in events if e.rank is None}
    unknown |= {
        f"shipment:{e.shipment['status']}"
        for e in events
        if e.shipment
        and isinstance(e.shipment.get("status"), str)
        and e.shipment["status"] not in SHIPMENT_STATUS_RANK
    }
    state.unknown_codes = sorted(unknown)
    state.missing_steps = _missing_steps(state.operation, known)

    _arrival_facts(state, events)
    return state


def _missing_steps(operation: str, known: list[EventFacts]) -> list[str]:
    """Steps of the PRODUCE path between the lowest and highest step seen that never came."""
    if operation != "PRODUCE":
        return []
    seen = {e.production_status for e in known}
    on_path = [i for i, status in enumerate(PRODUCE_PATH) if status in seen]
    if len(on_path) < 2:
        return []
    return [s for s in PRODUCE_PATH[on_path[0] : on_path[-1] + 1] if s not in seen]


def _arrival_facts(state: OrderState, events: list[EventFacts]) -> None:
    """Stage times and each event's outcome, replaying events in the order they first came."""
    by_arrival = sorted(events, key=EventFacts.arrival_key)
    state.first_event_at = by_arrival[0].first_received_at
    state.last_event_at = max(e.last_received_at for e in events)

    for event in by_arrival:
        status = event.production_status
        if event.rank is not None and status not in state.stage_first_seen:
            state.stage_first_seen[status] = event.first_received_at.isoformat()
    entered = state.stage_first_seen.get(state.production_status)
    state.stage_entered_at = dt.datetime.fromisoformat(entered) if entered else None

    best: EventFacts | None = None  # the highest event seen so far, in canonical order
    seen_failure = seen_shipped = False
    for event in by_arrival:
        status, rank = event.production_status, event.rank
        if rank is None:
            outcome = Outcome.UNKNOWN_STATUS
        elif (status in FAILURE_STATUSES and seen_shipped) or (
            status in SHIPPED_STATUSES and seen_failure
        ):
            outcome = Outcome.CONFLICT
        elif best is None:
            outcome = Outcome.ADVANCED
        elif (rank, shipment_rank(event.shipment)) < (best.rank, shipment_rank(best.shipment)):
            outcome = Outcome.STALE
        elif status != best.production_status:
            outcome = Outcome.ADVANCED
        elif event.shipment != best.shipment and event.canonical_key() > best.canonical_key():
            outcome = Outcome.SHIPMENT_UPDATE
        else:
            outcome = Outcome.NO_CHANGE
        if rank is not None:
            seen_failure |= status in FAILURE_STATUSES
            seen_shipped |= status in SHIPPED_STATUSES
            if best is None or event.canonical_key() > best.canonical_key():
                best = event
        state.outcomes[event.key] = outcome


# ---------------------------------------------------------------------------- reconcile flag


def reconcile_reason_for(state: OrderState) -> str:
    """The highest-priority reason the order's events give to ask D1, or ""."""
    if state.has_conflict:
        return ReconcileReason.CONFLICT
    if state.unknown_codes:
        return ReconcileReason.UNKNOWN_STATUS
    if state.missing_steps:
        return ReconcileReason.GAP
    return ""


def needs_reconcile_after(
    *, before: OrderState | None, after: OrderState, needs_reconcile: bool
) -> bool:
    """Whether the order needs the truth after new events turned `before` into `after`.

    A flag that newly appears (a conflict, an unknown code not seen before, a step newly missing)
    raises it; reconciliation clears it and it stays clear until something new appears. When late
    items resolve every flag (the missing step arrives), the order no longer needs the truth.
    """
    previous_unknown = set(before.unknown_codes) if before else set()
    previous_missing = set(before.missing_steps) if before else set()
    raised = (
        (after.has_conflict and not (before and before.has_conflict))
        or bool(set(after.unknown_codes) - previous_unknown)
        or bool(set(after.missing_steps) - previous_missing)
    )
    if raised:
        return True
    if needs_reconcile and not reconcile_reason_for(after):
        return False
    return needs_reconcile
