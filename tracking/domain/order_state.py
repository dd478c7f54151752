"""The derived state of one card order (`OrderState`), the columns it fills, and which rule and
event decided each of its fields (`Rule`, `Explanation`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_noop

from tracking.domain.statuses import FINAL_SHIPMENT_CLASSES, shipment_class


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
