"""The rules that turn a card order's set of notification items into one trustworthy state.

Everything that decides what an order looks like lives here, as plain data and pure functions:
the rank tables, the terminal set, the order of events by D1's own times, the fold, the flags
and what each event did. The services load events, call `derive_order_state`, and save what it
returns.

Decisions (SPEC §3, §7 and DESIGN §3; ASSUMPTION where D1 publishes nothing):
- which event is latest is decided by D1's times, as its documentation says ("use
  startTime/endTime to decide which event is latest"): an item with `endTime` is later than every
  item of the operation without one, then the later `endTime`, then the later `startTime`; only
  when the times tie does a rank (operation status, production step, carrier status) and then the
  content fingerprint decide. When an item was received never decides anything but the timeline;
- the latest event gives the operation's status, `errorCode`, `error`, `endTime`, the reason
  shown and, among events with carrier data, the current shipment; a completion (SUCCESSFUL or
  FAILED with `endTime`) is therefore never undone by a PENDING item;
- the production step only moves forward: the highest ranked `details.status` seen; the failures
  DATA_EXCEPTION, CARD_PROD_EXCEPTION and CARD_PROD_CANCELED outrank every normal step and stick;
- a failure together with CARD_SHIPPED (or CARD_RETURNED), two different failures, or a FAILED
  operation together with a higher step than the one it failed at, is a conflict: flagged and
  sent to reconciliation, never resolved by guessing;
- an operation whose latest word is FAILED is over: the order is terminal and shown as failed,
  whatever its step;
- an unknown `details.status` (a hold) is kept and flagged but never moves the step; it stays
  open, calling for D1's word, until the operation completes after it or D1's on-demand answer,
  asked after it came, no longer holds it; progress with the same times as an open hold asks D1;
- a carrier status is read as a class (`tracking.domain.carrier_status`); a word never seen is
the class
  `unknown`, shown as sent and never an unknown code; delivered and returned are final;
- an operation D1 reports SUCCESSFUL or FAILED is over at whatever step it is;
- a time without a zone is read in the issuer's zone (passed in; UTC by default);
- an item without `details` or `details.status` still counts for what it says, and asks D1;
- a jump over steps of the PRODUCE path between the lowest and highest step seen is a gap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from tracking.domain import carrier_status


def gettext_noop(text: str) -> str:
    """Marks words for the translation catalogue; the pages that show them translate them."""
    return text


# Which rules produced a stored state. Raise it whenever a change here can change the state of
# stored orders, and run `manage.py rederive` after deploying (docs/deploy.md).
#   1: ties inside a rank broken by the time the portal first received an item;
#   2: D1's startTime/endTime decide which event is latest; holds end; incomplete items count.
#   3: carrier statuses read as classes (any casing, AfterShip tags and subtags), a class's rank
#      breaks ties of times and an unknown carrier word is no exception; SUCCESSFUL ends the
#      order at any step; D1's on-demand answer closes the holds and unknown codes it
#      supersedes, and progress tied with an open hold asks D1; zone-less times are read in
#      the issuer's zone; the start time comes from any item that has one.
RULES_VERSION = 3

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

# The operation's own status (SPEC §1.4). Once SUCCESSFUL or FAILED the operation does not go
# back to PENDING (SPEC §3); on a tie of times the more final word is the later one.
FAILED = "FAILED"
OPERATION_STATUS_RANK: Mapping[str, int] = {"PENDING": 0, "SUCCESSFUL": 1, FAILED: 2}
COMPLETED_STATUSES = frozenset({"SUCCESSFUL", FAILED})

# The central-issuance PRODUCE path, used to see steps that were skipped.
PRODUCE_PATH: tuple[str, ...] = (
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
    "CARD_SHIPPED",
)

# Carrier statuses inside details.shipment.status are not published by D1 (SPEC §2.3); each is
# read as one class of a parcel's life by `tracking.domain.carrier_status`. D1's times decide which
# carrier update is current; the class's rank only breaks a tie of times. A word never seen is
# the class `unknown`: kept and shown as sent, never an unknown code by itself.
NO_SHIPMENT_STATUS_RANK = -1
# Carrier classes after which nothing more is expected from the carrier.
FINAL_SHIPMENT_CLASSES = carrier_status.FINAL_CLASSES
# After-shipment classes of the carrier status (the queues of tracking.selectors.order_queues).
DELIVERED_SHIPMENT_CLASSES = frozenset({carrier_status.DELIVERED})
RETURNED_SHIPMENT_CLASSES = frozenset({carrier_status.RETURNED})
DELIVERY_FAILED_SHIPMENT_CLASSES = frozenset({carrier_status.FAILED_ATTEMPT})
# Carrier classes that are real problems: the order is an exception.
PROBLEM_SHIPMENT_CLASSES = carrier_status.PROBLEM_CLASSES
UNKNOWN_SHIPMENT_CLASS = carrier_status.UNKNOWN

# ---------------------------------------------------------------------------- status classes
# What each class of status means for staff. The queues, the partial indexes, the sweep and the
# admin's colours are built from these names, never from literal codes.

# Cancelled at the issuer's request: a failure of the operation, but not an exception.
CANCELLED_STATUSES = frozenset({"CARD_PROD_CANCELED"})
# Failures that need staff attention.
EXCEPTION_STATUSES = FAILURE_STATUSES - CANCELLED_STATUSES
# The tracking hub's RETURN; a carrier's return is in RETURNED_SHIPMENT_CLASSES.
RETURNED_PRODUCTION_STATUSES = frozenset({"CARD_RETURNED"})
# Shipped: the stage after which the carrier's updates follow, until the carrier is final.
SHIPPED_STATUS = "CARD_SHIPPED"
AWAITING_DELIVERY_STATUS = SHIPPED_STATUS
# The stages an order can wait in, in path order: each has a time limit (the stage thresholds'
# keys, RECONCILE_STAGE_THRESHOLDS) beyond which it is stuck.
NON_TERMINAL_STATUSES: tuple[str, ...] = tuple(
    s for s in PRODUCTION_RANK if s not in TERMINAL_STATUSES
)

# Operations whose items make up a card order; any other operation (UPDATE_ORDER, ...) is stored
# and shown on the card's timeline without touching an order.
TRACKED_OPERATIONS = frozenset({"PRODUCE", "STANDALONE_TRACKING"})

_NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


class Outcome:
    """What one event did to its order's state (stored on the event, shown on the timeline)."""

    ADVANCED = "advanced"
    SHIPMENT_UPDATE = "shipment_update"
    STALE = "stale"
    UNKNOWN_STATUS = "unknown_status"
    INCOMPLETE = "incomplete"
    CONFLICT = "conflict"
    NO_CHANGE = "no_change"
    NOT_TRACKED = "not_tracked"  # an operation that is not a card order (UPDATE_ORDER, ...)
    INVALID = "invalid"  # failed validation; kept with its reason

    CHOICES = [
        (ADVANCED, gettext_noop("Advanced the state")),
        (SHIPMENT_UPDATE, gettext_noop("Shipment update")),
        (STALE, gettext_noop("Stale (earlier than the current state)")),
        (UNKNOWN_STATUS, gettext_noop("Unknown status code")),
        (INCOMPLETE, gettext_noop("Incomplete item (no details.status)")),
        (CONFLICT, gettext_noop("Conflict")),
        (NO_CHANGE, gettext_noop("No change")),
        (NOT_TRACKED, gettext_noop("Other operation (recorded)")),
        (INVALID, gettext_noop("Invalid item")),
    ]


class ReconcileReason:
    """Why an order needs the truth from D1, highest priority first."""

    CONFLICT = "conflict"
    INCOMPLETE = "incomplete_item"
    # Progress whose times tie with an open hold: D1's times cannot say whether the hold ended.
    HOLD_THEN_PROGRESS = "hold_then_progress"
    UNKNOWN_STATUS = "unknown_status"
    GAP = "gap"

    PRIORITY = (CONFLICT, INCOMPLETE, HOLD_THEN_PROGRESS, UNKNOWN_STATUS, GAP)
    CHOICES = [
        (CONFLICT, gettext_noop("Conflict")),
        (INCOMPLETE, gettext_noop("Item without details")),
        (HOLD_THEN_PROGRESS, gettext_noop("Progress after a hold")),
        (UNKNOWN_STATUS, gettext_noop("Unknown status")),
        (GAP, gettext_noop("Gap")),
    ]


class Rule:
    """The rule that decided a field of the state: short stable codes, for staff and the API."""

    HIGHEST_STEP = "highest_step"
    STICKY_FAILURE = "sticky_failure"
    NO_KNOWN_STEP = "no_known_step"
    LATEST_COMPLETION = "latest_completion"
    LATEST_EVENT = "latest_event"
    LATEST_SHIPMENT = "latest_shipment"
    CONFLICT = "conflict"
    UNKNOWN_CODE = "unknown_code"
    UNKNOWN_CODE_ENDED = "unknown_code_ended"
    OPEN_HOLD = "open_hold"
    INCOMPLETE_ITEM = "incomplete_item"
    GAP = "gap"
    RECONCILE = "reconcile"
    ANSWERED_BY_D1 = "answered_by_d1"
    CLOSED_BY_D1 = "closed_by_d1"
    HOLD_THEN_PROGRESS = "hold_then_progress"
    OPERATION_COMPLETED = "operation_completed"

    # In staff's words; the code stays beside them on the order page.
    TEXT = {
        HIGHEST_STEP: gettext_noop(
            "the furthest production step D1 reported; a step reported later that comes "
            "earlier in production does not move the order back"
        ),
        STICKY_FAILURE: gettext_noop("a failure stays, whatever normal step comes with it"),
        NO_KNOWN_STEP: gettext_noop("no event with a known step yet"),
        LATEST_COMPLETION: gettext_noop("the completion with the latest endTime"),
        LATEST_EVENT: gettext_noop("the latest event by D1's times (no completion yet)"),
        LATEST_SHIPMENT: gettext_noop(
            "a final carrier update (delivered, returned), else the latest by D1's times; on a tie "
            "of times the later class in a parcel's life"
        ),
        CONFLICT: gettext_noop("these events contradict each other"),
        UNKNOWN_CODE: gettext_noop("a code the portal does not know, not followed by a completion"),
        UNKNOWN_CODE_ENDED: gettext_noop(
            "a code the portal does not know; the operation completed after it"
        ),
        OPEN_HOLD: gettext_noop("on hold: an unknown step no completion has followed"),
        INCOMPLETE_ITEM: gettext_noop("an item without details.status; it counts for what it says"),
        GAP: gettext_noop("this step never arrived between steps that did"),
        RECONCILE: gettext_noop("the portal asks D1 for the truth"),
        ANSWERED_BY_D1: gettext_noop("D1 has answered on demand since; nothing new calls for it"),
        CLOSED_BY_D1: gettext_noop(
            "D1's on-demand answer, asked after this code came, no longer holds it"
        ),
        HOLD_THEN_PROGRESS: gettext_noop(
            "progress came with the same times as an open hold: D1 is asked"
        ),
        OPERATION_COMPLETED: gettext_noop(
            "D1 reports the operation SUCCESSFUL or FAILED: nothing is awaited"
        ),
    }


@dataclass(frozen=True)
class Explanation:
    """Which rule, and which event (its key; None when no event did, as for a gap), set a field."""

    field: str
    value: Any
    rule: str
    event: Any = None


# ---------------------------------------------------------------------------- helpers


def production_rank(status: str) -> int | None:
    """The rank of a `details.status`, or None for a code the portal does not know."""
    return PRODUCTION_RANK.get(status)


def shipment_class(shipment: Mapping[str, Any] | None) -> str:
    """The class of a shipment's carrier status ("" when it has none)."""
    if not shipment:
        return ""
    return carrier_status.carrier_status_class(shipment.get("status"))


def shipment_rank(shipment: Mapping[str, Any] | None) -> int:
    """The carrier class's place in a parcel's life, for ties of D1's times."""
    klass = shipment_class(shipment)
    return carrier_status.class_rank(klass) if klass else NO_SHIPMENT_STATUS_RANK


def lacks_zone(value: Any) -> bool:
    """Whether a time D1 sent is a valid ISO 8601 time without a zone (no offset, no Z)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        return dt.datetime.fromisoformat(value).tzinfo is None
    except ValueError:
        return False


def parse_time(value: Any, zone: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """An ISO 8601 time as an aware datetime, or None; a time without a zone is read in `zone`.

    The issuer's configured zone is passed in by the caller (UTC by default), so this stays a
    pure function. A time that does not exist in UTC (year 1 at +14:00) is no time: no
    database can store it.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    try:
        parsed.astimezone(dt.UTC)
    except OverflowError:
        return None
    return parsed


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


# ---------------------------------------------------------------------------- events


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


# ---------------------------------------------------------------------------- derived columns
# The card order's columns that are a function of its events, named once: ingest writes them,
# a replay and `manage.py rederive` compare them, reconciliation reads what changed.

# `OrderState`'s fields, copied to the order's columns of the same names.
FOLDED_COLUMNS: tuple[str, ...] = (
    "operation",
    "tracking_type",
    "operation_status",
    "production_status",
    "production_rank",
    "is_terminal",
    "start_time",
    "end_time",
    "issuer_request_id",
    "input_file_name",
    "production_site",
    "due_date",
    "reason",
    "error_code",
    "error",
    "shipment",
    "has_conflict",
    "unknown_codes",
    "hold_code",
    "hold_reason",
    "incomplete_items",
    "missing_steps",
    "state_fingerprint",
    "stage_first_seen",
    "stage_entered_at",
    "first_event_at",
    "last_event_at",
    "exception_changed_at",
    "event_count",
)
# Every derived column: the folded ones, the current shipment's parts, and the flags that call
# for D1's word.
DERIVED_COLUMNS: tuple[str, ...] = (
    *FOLDED_COLUMNS,
    "carrier",
    "tracking_number",
    "tracking_url",
    "shipment_status",
    "shipment_class",
    "shipment_message",
    "shipment_final",
    "has_unknown_status",
    "has_gap",
    "needs_reconcile",
    "reconcile_reason",
)
# What the order says about the card: when D1's answer moves one of these, a reconcile
# "changed" the order (arrival times, counts and bookkeeping do not count).
STATE_COLUMNS: tuple[str, ...] = (
    "operation_status",
    "production_status",
    "is_terminal",
    "end_time",
    "production_site",
    "due_date",
    "reason",
    "error_code",
    "error",
    "shipment",
    "shipment_class",
    "has_conflict",
    "unknown_codes",
    "hold_code",
    "missing_steps",
    "state_fingerprint",
)


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
    # The unknown codes no completion has followed yet (by D1's times): still calling for D1.
    open_unknown_codes: list[str] = field(default_factory=list)
    hold_code: str = ""
    hold_reason: str = ""
    # A step of progress whose times tie with the open hold: only D1 can say which is current.
    hold_then_progress: bool = False
    # Unknown codes D1's on-demand answer no longer holds (closed by D1's word).
    closed_by_d1: list[str] = field(default_factory=list)
    # Times D1 sent without a zone, read in the issuer's zone (flagged on the timeline).
    zone_assumed: bool = False
    incomplete_items: int = 0
    has_open_incomplete: bool = False
    missing_steps: list[str] = field(default_factory=list)
    state_fingerprint: str = ""
    # Arrival-time facts: they depend on when items came, not on what they say.
    stage_first_seen: dict[str, str] = field(default_factory=dict)
    stage_entered_at: dt.datetime | None = None
    first_event_at: dt.datetime | None = None
    last_event_at: dt.datetime | None = None
    exception_changed_at: dt.datetime | None = None
    event_count: int = 0
    outcomes: dict[Any, str] = field(default_factory=dict)
    # Which rule and event decided each field the order shows, as the fold decided it.
    explanation: list[Explanation] = field(default_factory=list)

    @property
    def shipment_class(self) -> str:
        """The current carrier status's class (`tracking.domain.carrier_status`), "" without one."""
        return shipment_class(self.shipment)

    @property
    def shipment_final(self) -> bool:
        return self.shipment_class in FINAL_SHIPMENT_CLASSES

    def content(self) -> dict[str, Any]:
        """The state without arrival-time facts: equal for any order of arrival of one set."""
        skip = {"stage_first_seen", "stage_entered_at", "first_event_at", "last_event_at"}
        skip |= {"exception_changed_at", "outcomes", "explanation"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


class _Conflicts:
    """Whether a set of known steps contradicts itself; events are added one at a time.

    Adding events never removes a contradiction, so the same tracker serves the fold (all events)
    and the replay in arrival order (which event made the order conflict).
    """

    def __init__(self) -> None:
        self.failures: set[str] = set()
        self.shipped = False
        self.failed_at: int | None = None  # the lowest normal step a FAILED operation reported
        self.highest_step: int | None = None  # the highest normal step seen

    def add(self, event: EventFacts) -> None:
        status, rank = event.production_status, event.rank
        if rank is None:
            return
        if status in FAILURE_STATUSES:
            self.failures.add(status)
            return
        self.shipped |= status in SHIPPED_STATUSES
        if event.operation_status == FAILED:
            self.failed_at = rank if self.failed_at is None else min(self.failed_at, rank)
        self.highest_step = rank if self.highest_step is None else max(self.highest_step, rank)

    @property
    def conflict(self) -> bool:
        return (
            (bool(self.failures) and self.shipped)
            or len(self.failures) > 1
            or (self.failed_at is not None and self.highest_step > self.failed_at)
        )


# ---------------------------------------------------------------------------- the fold


def derive_order_state(
    events: Iterable[EventFacts],
    *,
    zone: dt.tzinfo | None = None,
    d1_answer: Mapping[str, Any] | None = None,
) -> OrderState:
    """Fold an order's events into its state; a pure function of the set of events and inputs.

    `zone` is the issuer's zone, in which a time without one is read (UTC when None).
    `d1_answer` is D1's latest on-demand answer about the order's card, as the order records
    it (`{"at": ISO time, "fingerprints": [...]}`): what D1 said then is its current truth,
    which closes the holds and unknown codes it no longer holds.
    """
    if zone is not None and zone is not dt.UTC:  # UTC is every event's own default
        events = [replace(e, zone=zone) for e in events]
    events = sorted(events, key=EventFacts.latest_key)  # earliest first, by D1's times
    state = OrderState(event_count=len(events))
    if not events:
        return state

    # Everything but the step: the latest event by D1's times.
    latest = events[-1]
    why = Rule.LATEST_COMPLETION if latest.is_completion else Rule.LATEST_EVENT
    state.operation_status = latest.operation_status
    state.error_code = _text(latest.payload, {}, "errorCode")
    state.error = _text(latest.payload, {}, "error")
    state.end_time = latest.end_time
    state.reason = _text(latest.payload, latest.details, "reason")
    state.state_fingerprint = latest.fingerprint
    for name in ("operation_status", "error_code", "error", "end_time", "reason"):
        if getattr(state, name) or name == "operation_status":
            state.explanation.append(Explanation(name, getattr(state, name), why, latest.key))

    # The step: the highest rank seen; a failure therefore wins over any step of the normal path.
    known = [e for e in events if e.rank is not None]
    if known:
        step = max(known, key=lambda e: (e.rank, e.latest_key()))
        state.production_status = step.production_status
        state.production_rank = step.rank
        sticky = step.production_status in FAILURE_STATUSES
        rule = Rule.STICKY_FAILURE if sticky else Rule.HIGHEST_STEP
        state.explanation.insert(
            0, Explanation("production_status", step.production_status, rule, step.key)
        )
    else:
        state.explanation.insert(0, Explanation("production_status", "", Rule.NO_KNOWN_STEP))
    # D1's SUCCESSFUL or FAILED ends the operation at whatever step it was: nothing is awaited.
    state.is_terminal = (
        state.production_status in TERMINAL_STATUSES or state.operation_status in COMPLETED_STATUSES
    )
    if state.is_terminal and state.production_status not in TERMINAL_STATUSES:
        state.explanation.append(
            Explanation("is_terminal", True, Rule.OPERATION_COMPLETED, latest.key)
        )

    # Descriptive fields: the latest non-empty value by D1's times, so a step that lacks a field
    # does not blank what an earlier step said.
    shipment_event: EventFacts | None = None
    for event in events:
        payload, details = event.payload, event.details
        if isinstance(payload.get("operation"), str):
            state.operation = payload["operation"]
        # Every time D1 sent is kept, whatever else the item lacks (a hold, no details).
        if event.start_time is not None:
            state.start_time = event.start_time
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
        due = parse_date(details.get("dueDate"))
        if due is not None:
            state.due_date = due
        if event.shipment is not None and (
            shipment_event is None or event.shipment_key() > shipment_event.shipment_key()
        ):
            state.shipment = dict(event.shipment)
            shipment_event = event
    if shipment_event is not None:
        status = state.shipment.get("status") or ""
        state.explanation.append(
            Explanation("shipment", status, Rule.LATEST_SHIPMENT, shipment_event.key)
        )

    conflicts = _Conflicts()
    for event in known:
        conflicts.add(event)
    state.has_conflict = conflicts.conflict

    state.zone_assumed = any(
        lacks_zone(e.payload.get(name)) for e in events for name in ("startTime", "endTime")
    )
    _unknown_and_incomplete(state, events, d1_answer=d1_answer)
    state.missing_steps = _missing_steps(state.operation, known)
    state.explanation += [Explanation("missing_step", s, Rule.GAP) for s in state.missing_steps]
    _arrival_facts(state, events)
    _explain_reconcile(state)
    return state


def _explain_reconcile(state: OrderState) -> None:
    """Why the order asks D1: the same reason `reconcile_reason_for` gives, and its event."""
    reason = reconcile_reason_for(state)
    if not reason:
        return
    deciding = {
        ReconcileReason.CONFLICT: "has_conflict",
        ReconcileReason.INCOMPLETE: "incomplete_item",
        ReconcileReason.HOLD_THEN_PROGRESS: "hold_then_progress",
        ReconcileReason.UNKNOWN_STATUS: "unknown_code",
        ReconcileReason.GAP: "missing_step",
    }[reason]
    event = next((e.event for e in state.explanation if e.field == deciding), None)
    state.explanation.append(Explanation("reconcile_reason", reason, Rule.RECONCILE, event))


def _unknown_codes_of(event: EventFacts) -> list[str]:
    """The step codes of an event the portal does not know (a hold).

    A carrier word the portal does not know is the carrier class `unknown`: shown as sent and
    counted, but not an unknown code (it asks nothing of D1 and is no exception by itself).
    """
    if event.production_status and event.rank is None:
        return [event.production_status]
    return []


def _answered_before(
    events: list[EventFacts], d1_answer: Mapping[str, Any] | None
) -> Callable[[EventFacts], bool]:
    """Which events D1's on-demand answer supersedes: received before it and not in it.

    The answer speaks for the order only when it holds at least one of the order's items of a
    known step (an answer identical to a stored item is that item); an item received after
    the answer is news the answer could not know about.
    """
    if not d1_answer:
        return lambda event: False
    answered = set(d1_answer.get("fingerprints") or ())
    at = parse_time(d1_answer.get("at"))
    speaks = any(e.fingerprint in answered and e.rank is not None for e in events)
    if at is None or not speaks:
        return lambda event: False
    return lambda event: event.fingerprint not in answered and event.first_received_at <= at


def _unknown_and_incomplete(
    state: OrderState, events: list[EventFacts], *, d1_answer: Mapping[str, Any] | None = None
) -> None:
    """Unknown codes and incomplete items, and which of them nothing has ended yet.

    A completion after it by D1's times ends a code, and so does D1's on-demand answer when it
    no longer holds the code.
    """
    completions = [e.time_key() for e in events if e.is_completion]
    last_completion = max(completions) if completions else None
    superseded = _answered_before(events, d1_answer)

    def is_open(event: EventFacts) -> bool:
        return last_completion is None or not last_completion > event.time_key()

    def holds_open(event: EventFacts) -> bool:
        # A completion is the operation's last word: a code it carries (FAILED with a hold code
        # in details) is kept and shown, but the operation is over, so nothing is on hold.
        return is_open(event) and not event.is_completion

    unknown: set[str] = set()
    still_open: set[str] = set()
    hold: EventFacts | None = None
    code_event: dict[str, EventFacts] = {}
    closed: set[str] = set()
    for event in events:  # earliest first: the last open hold is the one shown
        codes = _unknown_codes_of(event)
        unknown.update(codes)
        code_event.update(dict.fromkeys(codes, event))
        if codes and holds_open(event) and superseded(event):
            closed.update(codes)
        elif codes and holds_open(event):
            still_open.update(codes)
            hold = event
    state.unknown_codes = sorted(unknown)
    state.open_unknown_codes = sorted(still_open)
    state.closed_by_d1 = sorted(closed - still_open)
    if hold is not None:
        state.hold_code = hold.production_status
        state.hold_reason = _text(hold.payload, hold.details, "reason")
        state.explanation.append(
            Explanation("hold_code", state.hold_code, Rule.OPEN_HOLD, hold.key)
        )
        # A step with the very same times as the hold: D1's times cannot say whether the hold
        # came before it (progress after the hold) or after it, so only D1 can say it ended.
        tied = [
            e
            for e in events
            if e.rank is not None and not e.is_completion and e.time_key() == hold.time_key()
        ]
        if hold.end_time is None and tied:
            state.hold_then_progress = True
            progress = max(tied, key=lambda e: (e.rank, e.latest_key()))
            state.explanation.append(
                Explanation("hold_then_progress", True, Rule.HOLD_THEN_PROGRESS, progress.key)
            )
    for code in state.unknown_codes:
        if code in still_open:
            rule = Rule.UNKNOWN_CODE
        elif code in state.closed_by_d1:
            rule = Rule.CLOSED_BY_D1
        else:
            rule = Rule.UNKNOWN_CODE_ENDED
        state.explanation.append(Explanation("unknown_code", code, rule, code_event[code].key))

    incomplete = [e for e in events if e.is_incomplete]
    state.incomplete_items = len(incomplete)
    state.has_open_incomplete = any(is_open(e) for e in incomplete)
    for event in incomplete:
        if is_open(event):
            state.explanation.append(
                Explanation(
                    "incomplete_item", event.operation_status, Rule.INCOMPLETE_ITEM, event.key
                )
            )


def _missing_steps(operation: str, known: list[EventFacts]) -> list[str]:
    """Steps of the PRODUCE path between the lowest and highest step seen that never came."""
    if operation != "PRODUCE":
        return []
    seen = {e.production_status for e in known}
    on_path = [i for i, status in enumerate(PRODUCE_PATH) if status in seen]
    if len(on_path) < 2:
        return []
    return [s for s in PRODUCE_PATH[on_path[0] : on_path[-1] + 1] if s not in seen]


def _exception_marks(event: EventFacts) -> set[tuple[str, str]]:
    """What an event adds to the order's exception: failure codes, errors, unknown codes and
    carrier problems (a class, not a word: the next word of the same problem is no news)."""
    marks = {("unknown", code) for code in _unknown_codes_of(event)}
    if event.carrier_class in PROBLEM_SHIPMENT_CLASSES:
        marks.add(("carrier", event.carrier_class))
    if event.production_status in FAILURE_STATUSES:
        marks.add(("failure", event.production_status))
    if event.operation_status == FAILED:
        marks.add(("failed", event.production_status))
    error_code = _text(event.payload, {}, "errorCode")
    if error_code:
        marks.add(("error", error_code))
    return marks


def _arrival_facts(state: OrderState, events: list[EventFacts]) -> None:
    """Stage times, when the exception last changed, and each event's outcome, by arrival.

    None of these decide the state: they say when the portal learned what it shows.
    """
    by_arrival = sorted(events, key=EventFacts.arrival_key)
    state.first_event_at = by_arrival[0].first_received_at
    state.last_event_at = max(e.last_received_at for e in events)

    for event in by_arrival:
        status = event.production_status
        if event.rank is not None and status not in state.stage_first_seen:
            state.stage_first_seen[status] = event.first_received_at.isoformat()
    entered = state.stage_first_seen.get(state.production_status)
    state.stage_entered_at = dt.datetime.fromisoformat(entered) if entered else None

    latest: EventFacts | None = None  # the latest event so far, by D1's times
    current_shipment: EventFacts | None = None
    highest_rank: int | None = None
    conflicts = _Conflicts()
    marks: set[tuple[str, str]] = set()
    for event in by_arrival:
        rank = event.rank
        was_conflict = conflicts.conflict
        conflicts.add(event)
        new_marks = _exception_marks(event) - marks
        if new_marks or (conflicts.conflict and not was_conflict):
            state.exception_changed_at = event.first_received_at
            marks |= new_marks

        newer = latest is None or event.latest_key() > latest.latest_key()
        moves_shipment = (
            rank is not None
            and event.shipment is not None
            and (current_shipment is None or event.shipment_key() > current_shipment.shipment_key())
        )
        if event.is_incomplete:
            outcome = Outcome.INCOMPLETE
        elif rank is None:
            outcome = Outcome.UNKNOWN_STATUS
        elif conflicts.conflict and not was_conflict:
            outcome = Outcome.CONFLICT
            # The event that made the order contradict itself explains the flag.
            state.explanation.append(Explanation("has_conflict", True, Rule.CONFLICT, event.key))
        elif highest_rank is None or rank > highest_rank:
            outcome = Outcome.ADVANCED
        elif moves_shipment and current_shipment and event.shipment != current_shipment.shipment:
            outcome = Outcome.SHIPMENT_UPDATE
        elif newer and event.time_key() > latest.time_key():
            outcome = Outcome.ADVANCED
        elif (
            rank < highest_rank
            or event.time_key() < latest.time_key()
            or (event.shipment is not None and not moves_shipment)
        ):
            outcome = Outcome.STALE
        else:
            outcome = Outcome.NO_CHANGE
        state.outcomes[event.key] = outcome

        if newer:
            latest = event
        if moves_shipment:
            current_shipment = event
        if rank is not None:
            highest_rank = rank if highest_rank is None else max(highest_rank, rank)


# ---------------------------------------------------------------------------- reconcile flag


def reconcile_reason_for(state: OrderState) -> str:
    """The highest-priority reason the order's events give to ask D1, or ""."""
    if state.has_conflict:
        return ReconcileReason.CONFLICT
    if state.has_open_incomplete:
        return ReconcileReason.INCOMPLETE
    if state.hold_then_progress:
        return ReconcileReason.HOLD_THEN_PROGRESS
    if state.open_unknown_codes:
        return ReconcileReason.UNKNOWN_STATUS
    if state.missing_steps:
        return ReconcileReason.GAP
    return ""


def needs_reconcile_after(
    *, before: OrderState | None, after: OrderState, needs_reconcile: bool
) -> bool:
    """Whether the order needs the truth after new events turned `before` into `after`.

    A flag that newly appears (a conflict, an unknown code or an incomplete item that no
    completion follows, a step newly missing) raises it; reconciliation clears it and it stays
    clear until something new appears. When later items resolve every flag (the missing step
    arrives, the operation completes after a hold), the order no longer needs the truth.
    """
    previous_unknown = set(before.unknown_codes) if before else set()
    previous_missing = set(before.missing_steps) if before else set()
    previous_incomplete = before.incomplete_items if before else 0
    raised = (
        (after.has_conflict and not (before and before.has_conflict))
        or (after.hold_then_progress and not (before and before.hold_then_progress))
        or bool(set(after.open_unknown_codes) - previous_unknown)
        or (after.has_open_incomplete and after.incomplete_items > previous_incomplete)
        or bool(set(after.missing_steps) - previous_missing)
    )
    if raised:
        return True
    if needs_reconcile and not reconcile_reason_for(after):
        return False
    return needs_reconcile
