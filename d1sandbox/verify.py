"""Compares what the portal's read API shows with the sandbox's own timeline of what happened.

The truth of an order is its state when D1 last said something about it: walking the order's
items in the order they happened (on the sandbox's clock, not in the order they reached the
portal), each field takes the value of the last item that speaks about it. No ranking rule of
the portal is involved, so a portal that lets arrival order decide shows up as a mismatch.

Fields are compared only where D1's data decides them (SPEC §7 "What the docs leave open"):

- `production_status`: the last known step that happened (an unknown code moves nothing);
- `operation_status`, `error_code`, `error`: those of the last item that happened;
- `end_time`: the `endTime` of the last completion; `start_time`: the operation's `startTime`;
- `shipment` (status, tracking number, carrier, message, URL): the last carrier update;
- `is_terminal`: true for a terminal step of SPEC §3, false while the operation is PENDING at
  a normal step (an operation completed at a normal step is left open: SPEC does not say);
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

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _details(item: dict[str, Any]) -> dict[str, Any] | None:
    details = item.get("details")
    return details if isinstance(details, dict) else None


def expected_order(*, order: TruthOrder) -> ExpectedOrder:
    """The order's state when D1 last said something, per field, from its timeline."""
    production_status: str | None = None
    shipment: dict[str, Any] | None = None
    end_time: str | None = None
    tracking_type: str | None = None
    for truth_item in order.items:  # in the order they happened
        item = truth_item.item
        details = _details(item) or {}
        if details.get("status") in KNOWN_DETAILS_STATUSES:
            production_status = details["status"]
        if isinstance(details.get("shipment"), dict):
            shipment = details["shipment"]
        if item.get("endTime"):
            end_time = item["endTime"]
        tracking_type = details.get("trackingType", tracking_type)
    last = order.items[-1].item
    last_details = _details(last) or {}

    fields: dict[str, Any] = {
        "operation": order.operation,
        "production_status": production_status,
        "operation_status": last.get("status"),
        "start_time": order.items[0].item.get("startTime"),
        "end_time": end_time,
        "error_code": last.get("errorCode"),
        "error": last.get("error"),
    }
    if production_status in TERMINAL_DETAILS_STATUSES:
        fields["is_terminal"] = True
    elif last.get("status") == "PENDING":
        fields["is_terminal"] = False
    if last.get("endTime") and last_details.get("reason"):
        fields["reason"] = last_details["reason"]
    if shipment is None:
        fields["shipment"] = None
    else:
        for name, d1_name in SHIPMENT_FIELDS.items():
            fields[f"shipment.{name}"] = shipment.get(d1_name)
    if tracking_type is not None:
        fields["tracking_type"] = tracking_type

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


def _portal_value(actual: dict[str, Any], name: str) -> Any:
    if name.startswith("shipment."):
        return (actual.get("shipment") or {}).get(name.split(".", 1)[1])
    return actual.get(name)


def _same(name: str, want: Any, got: Any) -> bool:
    if want in (None, "") or got in (None, "", {}):
        return want in (None, "") and got in (None, "", {})
    if name in TIME_FIELDS:
        return _instant(want) == _instant(got)
    if name == "due_date":
        return str(want)[:10] == str(got)[:10]
    return want == got


def _instant(text: Any) -> datetime | str:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text)


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
    for difference in order_differences(expected=expected, actual=actual):
        report.mismatches.append(f"{label}: {difference}")
