"""End-to-end check that the portal's Exceptions hold exactly the sandbox's real problems."""

from __future__ import annotations

from django.utils import timezone

from d1sandbox.state import ORDER_OPERATIONS
from d1sandbox.verify import VerifyReport
from tracking.models import CardOrder
from tracking.selectors.order_queues import QUEUES

SHOWN_FIELDS = (
    "production_status",
    "operation_status",
    "shipment_status",
    "hold_code",
    "has_unknown_status",
    "has_conflict",
    "unknown_codes",
    "error_code",
    "exception_reason",
)


def portal_exceptions(*, issuer_ids: list[str], report: VerifyReport) -> dict[str, str]:
    """The orders of these issuers in the Exceptions queue (label -> what the order shows).

    An older order of a card ordered again whose last word was dropped is left out, as verify
    leaves it out (nothing can bring D1's last word about it back).
    """
    hidden = set(report.hidden)
    queue = QUEUES["exceptions"]
    orders = CardOrder.objects.filter(
        queue.q(now=timezone.now()),
        issuer__issuer_id__in=issuer_ids,
        operation__in=ORDER_OPERATIONS,
    ).select_related("issuer")
    found = {}
    for order in orders:
        label = f"{order.issuer.issuer_id}/{order.card_id}/{order.operation_id}"
        if label in hidden or (not order.operation_id and order.superseded_by_id):
            continue
        shown = {name: getattr(order, name, None) for name in SHOWN_FIELDS}
        found[label] = ", ".join(f"{k}={v!r}" for k, v in shown.items() if v not in (None, ""))
    return found


def assert_exceptions_are_the_real_problems(*, issuer_ids: list[str], report: VerifyReport) -> None:
    """Exceptions hold every order the sandbox knows is a real problem, and nothing else."""
    shown = portal_exceptions(issuer_ids=issuer_ids, report=report)
    unexpected = {label: shown[label] for label in sorted(set(shown) - set(report.problems))}
    missing = {label: report.problems[label] for label in sorted(set(report.problems) - set(shown))}
    assert not unexpected and not missing, (
        f"in Exceptions without being a real problem ({len(unexpected)}): {unexpected}\n"
        f"real problems not in Exceptions ({len(missing)}): {missing}"
    )
