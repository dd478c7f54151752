"""The fold: a card order's set of notification items turned into one trustworthy state.

`derive_order_state` and what each event did (`Outcome`) live here; the rank tables and status
classes in `statuses`, the order of events by D1's times in `ordering`, the flags that call for
D1's word in `flags`, the state and its columns in `order_state`, D1's times in `times`. The
services load events, call `derive_order_state`, and save what it returns.

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
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from django.utils.translation import gettext_noop

from tracking.domain.flags import (
    Conflicts,
    explain_reconcile,
    missing_steps_of,
    unknown_and_incomplete,
    unknown_codes_of,
)
from tracking.domain.order_state import Explanation, OrderState, Rule
from tracking.domain.ordering import EventFacts, item_text
from tracking.domain.statuses import (
    COMPLETED_STATUSES,
    FAILED,
    FAILURE_STATUSES,
    PROBLEM_SHIPMENT_CLASSES,
    TERMINAL_STATUSES,
)
from tracking.domain.times import lacks_zone, parse_date

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
    state.error_code = item_text(latest.payload, {}, "errorCode")
    state.error = item_text(latest.payload, {}, "error")
    state.end_time = latest.end_time
    state.reason = item_text(latest.payload, latest.details, "reason")
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
            value = item_text(payload, details, name)
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

    conflicts = Conflicts()
    for event in known:
        conflicts.add(event)
    state.has_conflict = conflicts.conflict

    state.zone_assumed = any(
        lacks_zone(e.payload.get(name)) for e in events for name in ("startTime", "endTime")
    )
    unknown_and_incomplete(state, events, d1_answer=d1_answer)
    state.missing_steps = missing_steps_of(state.operation, known)
    state.explanation += [Explanation("missing_step", s, Rule.GAP) for s in state.missing_steps]
    _arrival_facts(state, events)
    explain_reconcile(state)
    return state


def _exception_marks(event: EventFacts) -> set[tuple[str, str]]:
    """What an event adds to the order's exception: failure codes, errors, unknown codes and
    carrier problems (a class, not a word: the next word of the same problem is no news)."""
    marks = {("unknown", code) for code in unknown_codes_of(event)}
    if event.carrier_class in PROBLEM_SHIPMENT_CLASSES:
        marks.add(("carrier", event.carrier_class))
    if event.production_status in FAILURE_STATUSES:
        marks.add(("failure", event.production_status))
    if event.operation_status == FAILED:
        marks.add(("failed", event.production_status))
    error_code = item_text(event.payload, {}, "errorCode")
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
    conflicts = Conflicts()
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
