"""Compares the sandbox's truth with what the portal's read API says about every delivered order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from d1sandbox.lifecycle import KNOWN_DETAILS_STATUSES, TERMINAL_DETAILS_STATUSES
from d1sandbox.state import DEFAULT_STATE_PATH, StateStore, TruthOrder

ORDERS_PATH = "/api/v1/orders/"


@dataclass(frozen=True)
class ExpectedOrder:
    """What the portal should believe about one order once it has reconciled."""

    issuer_id: str
    card_id: str
    operation_id: str
    production_status: str | None
    operation_status: str | None
    is_terminal: bool
    shipment_status: str | None
    tracking_number: str | None


@dataclass
class VerifyReport:
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    invisible: list[str] = field(default_factory=list)  # every notification dropped

    @property
    def ok(self) -> bool:
        return not self.mismatches


def expected_order(*, order: TruthOrder) -> ExpectedOrder:
    """The latest KNOWN details.status (an unknown code moves nothing) and the latest shipment."""
    latest_known: dict[str, Any] | None = None
    latest_shipment: dict[str, Any] | None = None
    for truth_item in order.items:
        details = truth_item.item.get("details") or {}
        if details.get("status") in KNOWN_DETAILS_STATUSES:
            latest_known = truth_item.item
        if isinstance(details.get("shipment"), dict):
            latest_shipment = details["shipment"]
    production_status = latest_known["details"]["status"] if latest_known else None
    return ExpectedOrder(
        issuer_id=order.issuer_id,
        card_id=order.card_id,
        operation_id=order.operation_id,
        production_status=production_status,
        operation_status=latest_known.get("status") if latest_known else None,
        is_terminal=production_status in TERMINAL_DETAILS_STATUSES,
        shipment_status=latest_shipment.get("status") if latest_shipment else None,
        tracking_number=latest_shipment.get("trackingNumber") if latest_shipment else None,
    )


def order_differences(*, expected: ExpectedOrder, actual: dict[str, Any]) -> list[str]:
    """Human-readable differences between the expectation and one read-API result."""
    differences = []
    pairs: list[tuple[str, Any, Any]] = [
        ("production_status", expected.production_status, actual.get("production_status")),
        ("operation_status", expected.operation_status, actual.get("operation_status")),
        ("is_terminal", expected.is_terminal, actual.get("is_terminal")),
    ]
    if expected.shipment_status is not None or expected.tracking_number is not None:
        shipment = actual.get("shipment") or {}
        pairs += [
            ("shipment.status", expected.shipment_status, shipment.get("status")),
            ("shipment.tracking_number", expected.tracking_number, shipment.get("tracking_number")),
        ]
    for name, want, got in pairs:
        if want != got:
            differences.append(f"{name}: expected {want!r}, portal has {got!r}")
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
    """Check every order of which at least one notification was delivered; prints mismatches."""
    store = StateStore(state_path)
    try:
        issuers = issuer_ids or store.issuers()
        report = VerifyReport()
        session = requests.Session()
        for issuer_id in issuers:
            actual_by_key = {
                (row.get("card_id"), row.get("operation_id")): row
                for row in portal_orders(
                    portal_url=portal_url,
                    token=token,
                    issuer_id=issuer_id,
                    session=session,
                    timeout=timeout,
                )
                if row.get("issuer_id", issuer_id) == issuer_id
            }
            for order in store.orders(issuer_ids=[issuer_id], run_id=run_id):
                label = f"{order.issuer_id}/{order.card_id}/{order.operation_id}"
                if not order.delivered:
                    report.invisible.append(label)
                    continue
                report.checked += 1
                actual = actual_by_key.get((order.card_id, order.operation_id))
                if actual is None:
                    report.mismatches.append(f"{label}: missing in the portal")
                    continue
                expected = expected_order(order=order)
                for difference in order_differences(expected=expected, actual=actual):
                    report.mismatches.append(f"{label}: {difference}")
    finally:
        store.close()

    for line in report.mismatches:
        out(f"MISMATCH {line}")
    out(f"orders checked: {report.checked}")
    out(f"mismatches: {len(report.mismatches)}")
    invisible = len(report.invisible)
    out(f"orders with every notification dropped (invisible to any receiver): {invisible}")
    for label in report.invisible:
        out(f"  invisible {label}")
    return report
