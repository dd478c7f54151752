"""Compares what the portal's read API shows with the sandbox's own timeline of what happened.

The truth of an order is its state when D1 last said something about it: walking the order's
items in the order they happened (on the sandbox's clock, not in the order they reached the
portal), each field takes the value of the last item that speaks about it. No ranking rule of
the portal is involved, so a portal that lets arrival order decide shows up as a mismatch.

Fields are compared only where D1's data decides them (SPEC §7 "What the docs leave open"):

- `production_status`: the last known step that happened (an unknown code moves nothing);
- `operation_status`, `error_code`, `error`: those of the last item that happened;
- `end_time`: the `endTime` of the last completion; `start_time`: the operation's `startTime`;
- `shipment` (status, tracking number, carrier, message, URL): the last carrier update; its
  times tie with the other updates of the shipment, so where an update of the same class and
  times says something else (a changed late copy), either value is right;
- `shipment.normalized_status`: the class the sandbox meant by the last carrier word;
- `is_terminal`: true for a terminal step of SPEC §3 and for a completed operation (SUCCESSFUL
  or FAILED ends the order at whatever step), false while the operation is PENDING;
- `hold_code`: the hold D1 last spoke of while it is open (the last step D1 named is a hold and
  the operation has not completed), empty once D1 moved on;
- `exception_class`: whether the order is a real problem and which (data exception, production
  exception, failed, returned, carrier exception), against what the read API's fields show;
- `reason`: when the last thing that happened was a completion giving one (a reason carried
  only by PENDING items ties with the items around it on D1's times);
- `production_site`, `due_date`, `issuer_request_id`, `input_file_name`: D1 sends them on
  some items only, so they are expected once an item carrying them (or, for the last two, the
  registration) reached the portal;
- `unknown_codes`: every unknown code the portal acknowledged receiving.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from d1sandbox.lifecycle import KNOWN_DETAILS_STATUSES, TERMINAL_DETAILS_STATUSES
from d1sandbox.state import DEFAULT_STATE_PATH, ORDER_OPERATIONS, StateStore, TruthOrder
from d1sandbox.vocabulary import EXCEPTION, RETURNED, carrier_word_class, time_read

ORDERS_PATH = "/api/v1/orders/"
TIME_FIELDS = frozenset({"start_time", "end_time"})
# Read-API shipment keys and the D1 keys they come from.
SHIPMENT_FIELDS = {
    "status": "status",
    "tracking_number": "trackingNumber",
    "carrier": "carrier",
    "message": "message",
    "tracking_url": "trackingUrl",
}
CANCELED = "CARD_PROD_CANCELED"
# The real problems of an order, as `exception_class` names them.
PROBLEM_BY_STEP = {
    "DATA_EXCEPTION": "data_exception",
    "CARD_PROD_EXCEPTION": "production_exception",
    "CARD_RETURNED": "returned",
}
PROBLEM_BY_CARRIER_CLASS = {RETURNED: "returned", EXCEPTION: "carrier_exception"}


@dataclass(frozen=True)
class OneOf:
    """An expectation met by any of several values (D1's times and ranks cannot tell them apart)."""

    values: tuple[Any, ...]

    def __repr__(self) -> str:
        return "one of " + " / ".join(repr(value) for value in self.values)


@dataclass(frozen=True)
class ExpectedOrder:
    """What the portal should show about one order once it has reconciled."""

    issuer_id: str
    card_id: str
    operation_id: str
    fields: dict[str, Any]  # read-API field ("shipment.status" for nested ones) -> value
    unknown_codes: tuple[str, ...] = ()


@dataclass
class VerifyReport:
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    invisible: list[str] = field(default_factory=list)  # never seen by the portal
    hidden: list[str] = field(default_factory=list)  # see verify_run
    registered: int = 0
    # The checked orders that are a real problem by the sandbox's truth: label -> class. The
    # portal's Exceptions should hold exactly these.
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _details(item: dict[str, Any]) -> dict[str, Any] | None:
    details = item.get("details")
    return details if isinstance(details, dict) else None


def expected_order(*, order: TruthOrder) -> ExpectedOrder:
    """The order's state when D1 last said something, per field, from its timeline."""
    production_status: str | None = None
    last_named: str | None = None  # the last details.status D1 named, known or not
    updates: list[dict[str, Any]] = []  # items carrying a shipment, in the order they happened
    end_time: str | None = None
    tracking_type: str | None = None
    for truth_item in order.items:  # in the order they happened
        item = truth_item.item
        details = _details(item) or {}
        if details.get("status"):
            last_named = details["status"]
        if details.get("status") in KNOWN_DETAILS_STATUSES:
            production_status = details["status"]
        if isinstance(details.get("shipment"), dict):
            updates.append(item)
        if item.get("endTime"):
            end_time = item["endTime"]
        tracking_type = details.get("trackingType", tracking_type)
    last = order.items[-1].item
    last_details = _details(last) or {}
    completed = bool(last.get("endTime")) and last.get("status") in ("SUCCESSFUL", "FAILED")

    fields: dict[str, Any] = {
        "operation": order.operation,
        "production_status": production_status,
        "operation_status": last.get("status"),
        "start_time": order.items[0].item.get("startTime"),
        "end_time": end_time,
        "error_code": last.get("errorCode"),
        "error": last.get("error"),
    }
    if production_status in TERMINAL_DETAILS_STATUSES or completed:
        fields["is_terminal"] = True
    elif last.get("status") == "PENDING":
        fields["is_terminal"] = False
    if last.get("endTime") and last_details.get("reason"):
        fields["reason"] = last_details["reason"]
    carrier_class = None
    if not updates:
        fields["shipment"] = None
    else:
        shipment_fields, carrier_class = _expected_shipment(updates)
        fields.update(shipment_fields)
    if tracking_type is not None:
        fields["tracking_type"] = tracking_type
    hold_open = last_named not in KNOWN_DETAILS_STATUSES and last_named and not completed
    fields["hold_code"] = last_named if hold_open else None
    fields["exception_class"] = _expected_problem(
        production_status=production_status,
        operation_status=last.get("status") if last.get("endTime") else None,
        carrier_class=carrier_class,
        hold_open=bool(hold_open),
    )

    # Fields D1 sends on some items only: expected once the portal received one carrying them.
    delivered = [t.item for t in order.items if t.delivered_count > 0]
    for item in delivered:
        details = _details(item) or {}
        if details.get("productionSite"):
            fields["production_site"] = details["productionSite"]
        if details.get("dueDate"):
            fields["due_date"] = details["dueDate"]
        for name, d1_name in (
            ("issuer_request_id", "issuerRequestId"),
            ("input_file_name", "inputFileName"),
        ):
            value = item.get(d1_name) or details.get(d1_name)
            if value:
                fields[name] = value
    unknown = {
        details["status"]
        for item in delivered
        if (details := _details(item)) and details.get("status")
        if details["status"] not in KNOWN_DETAILS_STATUSES
    }
    return ExpectedOrder(
        issuer_id=order.issuer_id,
        card_id=order.card_id,
        operation_id=order.operation_id,
        fields=fields,
        unknown_codes=tuple(sorted(unknown)),
    )


def _expected_shipment(updates: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The read API's shipment fields after these carrier updates, and the last one's class.

    The updates of one shipment carry the operation's times, so the last one that happened is
    the one whose class comes last in a shipment's life (the sandbox sends them so). Updates
    with the same times and the same class as it (a copy with a new message) cannot be told
    apart by D1's times or by the class: any of their values is right.
    """
    last = updates[-1]
    last_shipment = last["details"]["shipment"]
    carrier_class = carrier_word_class(str(last_shipment.get("status")))
    twins = [
        item["details"]["shipment"]
        for item in updates
        if (item.get("startTime"), item.get("endTime"))
        == (last.get("startTime"), last.get("endTime"))
        and carrier_word_class(str(item["details"]["shipment"].get("status"))) == carrier_class
    ]
    fields: dict[str, Any] = {}
    for name, d1_name in SHIPMENT_FIELDS.items():
        values = tuple(dict.fromkeys(shipment.get(d1_name) for shipment in twins))
        fields[f"shipment.{name}"] = values[0] if len(values) == 1 else OneOf(values)
    fields["shipment.normalized_status"] = carrier_class
    return fields, carrier_class


def _expected_problem(
    *,
    production_status: str | None,
    operation_status: str | None,
    carrier_class: str | None,
    hold_open: bool,
) -> str | None:
    """Which real problem the order is, by the sandbox's truth; None when it is none."""
    if production_status in PROBLEM_BY_STEP:
        return PROBLEM_BY_STEP[production_status]
    if operation_status == "FAILED" and production_status != CANCELED:
        return "failed"
    if carrier_class in PROBLEM_BY_CARRIER_CLASS:
        return PROBLEM_BY_CARRIER_CLASS[carrier_class]
    if hold_open:
        return "on_hold"
    return None


def portal_problem(actual: dict[str, Any]) -> str | None:
    """Which problem the read API shows for one order, named as `exception_class` names them.

    A failure of D1's comes first; then the carrier's class; then what only the portal can
    raise (a conflict, an unknown code still open, an exception reason of its own), which the
    sandbox never expects of an order whose hold has ended or whose carrier word is normal.
    """
    production_status = actual.get("production_status")
    if production_status in PROBLEM_BY_STEP:
        return PROBLEM_BY_STEP[production_status]
    if actual.get("operation_status") == "FAILED" and production_status != CANCELED:
        return "failed"
    carrier_class = (actual.get("shipment") or {}).get("normalized_status")
    if carrier_class in PROBLEM_BY_CARRIER_CLASS:
        return PROBLEM_BY_CARRIER_CLASS[carrier_class]
    if actual.get("hold_code"):
        return "on_hold"
    if actual.get("has_conflict"):
        return "conflict"
    if actual.get("has_unknown_status"):
        return "unknown_status"
    if actual.get("exception_reason"):
        return f"exception_reason {actual['exception_reason']}"
    return None


def _portal_value(actual: dict[str, Any], name: str) -> Any:
    if name == "exception_class":
        return portal_problem(actual)
    if name.startswith("shipment."):
        return (actual.get("shipment") or {}).get(name.split(".", 1)[1])
    return actual.get(name)


def _same(name: str, want: Any, got: Any) -> bool:
    if isinstance(want, OneOf):
        return any(_same(name, value, got) for value in want.values)
    if want in (None, "") or got in (None, "", {}):
        return want in (None, "") and got in (None, "", {})
    if name in TIME_FIELDS:
        return _instant(want) == _instant(got)
    if name == "due_date":
        return str(want)[:10] == str(got)[:10]
    return want == got


def _instant(text: Any) -> datetime | str:
    """An instant; a time D1 wrote without a zone is in the issuer's zone (UTC by default)."""
    return time_read(str(text)) or str(text)


def order_differences(*, expected: ExpectedOrder, actual: dict[str, Any]) -> list[str]:
    """Human-readable differences between the expectation and one read-API result."""
    differences = []
    for name, want in expected.fields.items():
        got = _portal_value(actual, name)
        if not _same(name, want, got):
            differences.append(f"{name}: expected {want!r}, portal has {got!r}")
    shown_codes = set(actual.get("unknown_codes") or [])
    for code in expected.unknown_codes:
        if code not in shown_codes:
            differences.append(f"unknown_codes: expected {code!r} among {sorted(shown_codes)!r}")
    return differences


def portal_orders(
    *, portal_url: str, token: str, issuer_id: str, session: requests.Session, timeout: float
) -> Iterator[dict[str, Any]]:
    """Every order the portal lists for an issuer, following the cursor's `next` links."""
    url: str | None = f"{portal_url.rstrip('/')}{ORDERS_PATH}"
    params: dict[str, str] | None = {"issuer_id": issuer_id}
    while url:
        response = session.get(
            url,
            params=params,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
        )
        response.raise_for_status()
        page = response.json()
        yield from page.get("results", [])
        url = page.get("next")
        params = None  # `next` already carries the query string


def verify_run(
    *,
    portal_url: str,
    token: str,
    issuer_ids: list[str] | None = None,
    state_path: Path = DEFAULT_STATE_PATH,
    run_id: int | None = None,
    timeout: float = 30.0,
    out: Callable[[str], Any] = print,
) -> VerifyReport:
    """Check every card order of the timeline against the portal; prints what differs.

    An order the portal does not list is a mismatch when the portal acknowledged one of its
    notifications or registered it, and "invisible" otherwise (nothing ever reached it); one
    registered without its operationId is found by card among the portal's orders that have
    none yet, and compared like any other (D1's first word should have joined it). An
    order of a card that was ordered again is "hidden" when D1's last word about it was
    dropped: productionStatus answers per card with the newer order, so nothing can bring
    that word back; it is not compared.
    """
    store = StateStore(state_path)
    try:
        issuers = issuer_ids or store.issuers()
        report = VerifyReport()
        session = requests.Session()
        for issuer_id in issuers:
            rows = [
                row
                for row in portal_orders(
                    portal_url=portal_url,
                    token=token,
                    issuer_id=issuer_id,
                    session=session,
                    timeout=timeout,
                )
                if row.get("issuer_id", issuer_id) == issuer_id
            ]
            actual_by_key = {(row.get("card_id"), row.get("operation_id")): row for row in rows}
            # An order registered without its operationId (placed in a file) is listed by card
            # alone until D1's first word about it reaches the portal.
            waiting_by_card = {
                row.get("card_id"): row for row in rows if not row.get("operation_id")
            }
            truth = [
                order
                for order in store.orders(issuer_ids=[issuer_id], run_id=run_id)
                if order.operation in ORDER_OPERATIONS
            ]
            newest_start: dict[str, int] = defaultdict(int)
            for order in truth:
                newest_start[order.card_id] = max(newest_start[order.card_id], order.start_seq)
            for order in truth:
                actual = actual_by_key.get((order.card_id, order.operation_id))
                if actual is None and order.registered:
                    actual = waiting_by_card.get(order.card_id)
                _order_check(
                    order=order,
                    actual=actual,
                    superseded=order.start_seq < newest_start[order.card_id],
                    report=report,
                )
    finally:
        store.close()

    for line in report.mismatches:
        out(f"MISMATCH {line}")
    out(f"orders checked: {report.checked}")
    out(f"mismatches: {len(report.mismatches)}")
    out(f"registered orders: {report.registered}")
    out(f"real problems (exception_class): {len(report.problems)}")
    out(f"invisible orders (never seen by the portal): {len(report.invisible)}")
    for label in report.invisible:
        out(f"  invisible {label}")
    out(
        "hidden by a newer order of the card (D1's last word about them was dropped): "
        f"{len(report.hidden)}"
    )
    return report


def _order_check(
    *, order: TruthOrder, actual: dict[str, Any] | None, superseded: bool, report: VerifyReport
) -> None:
    label = f"{order.issuer_id}/{order.card_id}/{order.operation_id}"
    if order.registered:
        report.registered += 1
    if actual is None:
        if order.delivered:
            report.mismatches.append(f"{label}: missing in the portal")
        elif order.registered:
            report.mismatches.append(f"{label}: registered, but the portal has not heard of it")
            report.invisible.append(label)
        elif order.items:
            report.invisible.append(label)
        return
    if not order.items:
        return  # placed, but D1 has said nothing yet
    if superseded and order.items[-1].delivered_count == 0:
        report.hidden.append(label)
        return
    report.checked += 1
    expected = expected_order(order=order)
    if expected.fields.get("exception_class"):
        report.problems[label] = expected.fields["exception_class"]
    for difference in order_differences(expected=expected, actual=actual):
        report.mismatches.append(f"{label}: {difference}")
