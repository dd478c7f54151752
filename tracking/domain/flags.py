"""The flags that call for D1's word: conflicts, holds and unknown codes, incomplete items and
gaps, and the reason an order is reconciled (`ReconcileReason`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.utils.translation import gettext_noop

from tracking.domain.order_state import Explanation, OrderState, Rule
from tracking.domain.ordering import EventFacts, item_text
from tracking.domain.statuses import (
    FAILED,
    FAILURE_STATUSES,
    PRODUCE_PATH,
    SHIPPED_OR_RETURNED_STATUSES,
)
from tracking.domain.times import parse_time


class ReconcileReason:
    """Why the portal asks D1 about an order.

    The flags its events raise come first, highest priority first (`PRIORITY`, stored on the
    order as `reconcile_reason`); the sweep's own reasons, which depend on the clock or on staff,
    are written only on the attempt.
    """

    CONFLICT = "conflict"
    INCOMPLETE = "incomplete_item"
    # Progress whose times tie with an open hold: D1's times cannot say whether the hold ended.
    HOLD_THEN_PROGRESS = "hold_then_progress"
    UNKNOWN_STATUS = "unknown_status"
    GAP = "gap"
    # The sweep's own reasons (tracking.services.reconcile), besides the flags above.
    STAGE_THRESHOLD = "stage_threshold"
    PAST_DUE = "past_due"
    AWAITING_DELIVERY = "awaiting_delivery"
    SILENT = "silent"  # registered, and D1 has said nothing about it yet
    CANCEL_UNCONFIRMED = "cancel_unconfirmed"  # an accepted CANCEL without CARD_PROD_CANCELED
    LOOK_UP = "look_up"  # staff or a command looked the card up

    PRIORITY = (CONFLICT, INCOMPLETE, HOLD_THEN_PROGRESS, UNKNOWN_STATUS, GAP)
    CHOICES = [
        (CONFLICT, gettext_noop("Conflict")),
        (INCOMPLETE, gettext_noop("Item without details")),
        (HOLD_THEN_PROGRESS, gettext_noop("Progress after a hold")),
        (UNKNOWN_STATUS, gettext_noop("Unknown status")),
        (GAP, gettext_noop("Gap")),
    ]


class Conflicts:
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
        self.shipped |= status in SHIPPED_OR_RETURNED_STATUSES
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


def explain_reconcile(state: OrderState) -> None:
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


def unknown_codes_of(event: EventFacts) -> list[str]:
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


def unknown_and_incomplete(
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
        codes = unknown_codes_of(event)
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
        state.hold_reason = item_text(hold.payload, hold.details, "reason")
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


def missing_steps_of(operation: str, known: list[EventFacts]) -> list[str]:
    """Steps of the PRODUCE path between the lowest and highest step seen that never came."""
    if operation != "PRODUCE":
        return []
    seen = {e.production_status for e in known}
    on_path = [i for i, status in enumerate(PRODUCE_PATH) if status in seen]
    if len(on_path) < 2:
        return []
    return [s for s in PRODUCE_PATH[on_path[0] : on_path[-1] + 1] if s not in seen]


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
