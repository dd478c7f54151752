"""Simulated card orders: the steps each one goes through and the items D1 would send for them.

The path of an order (happy path, data exception, cancellation, on-hold, tracking hub) and every
value it carries are drawn up front from the order's own random generator, so an order looks the
same whatever other orders run beside it. Only timestamps come from the clock passed at each step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# SPEC §2.1 / §2.3 and the instant-issuance and tracking-hub lists: the codes the portal knows.
KNOWN_DETAILS_STATUSES = frozenset(
    {
        "CARD_PROD_REQUESTED",
        "DATA_PREPARED",
        "DATA_EXCEPTION",
        "CARD_PROD_READY",
        "CARD_PROD_ONGOING",
        "CARD_PROD_DONE",
        "CARD_SHIPPED",
        "CARD_PROD_CANCELED",
        "CARD_PROD_EXCEPTION",
        "CARD_RETURNED",
    }
)
TERMINAL_DETAILS_STATUSES = frozenset(
    {"CARD_SHIPPED", "DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_CANCELED", "CARD_RETURNED"}
)
# Hypothetical (SPEC §8): no on-hold code is published; it exercises the unknown-status rule.
ON_HOLD_STATUS = "CARD_PROD_ON_HOLD"

CARRIER_CODES = (
    "chronopost-france",
    "dhl",
    "dhl-global-mail",
    "deutsch-post",
    "estafeta",
    "fedex",
    "la-poste-colissimo",
    "nacex",
    "spanish-seur",
    "singapore-post",
    "spain-correos-es",
    "ups",
    "usps-iv-api",
)
# Carrier statuses are not published by D1 (SPEC §2.3); these invented ones only ever move forward.
SHIPMENT_MESSAGES = {
    "IN_TRANSIT": "Picked up by carrier",
    "OUT_FOR_DELIVERY": "Out for delivery",
    "DELIVERED": "Delivered, left at front door",
}
PRODUCTION_SITES = (
    "PERSO-SITE-EU-01",
    "PERSO-SITE-EU-02",
    "PERSO-SITE-US-01",
    "PERSO-SITE-APAC-01",
)
DATA_EXCEPTIONS = (
    (
        "DATA_VALIDATION_FAILED",
        "Delivery address country not allowed for program",
        "shipment.deliveryAddress.countryCode rejected",
    ),
    ("DATA_DECRYPTION_FAILED", "Encrypted card data could not be read", "encryptedData rejected"),
    ("PRODUCT_NOT_CONFIGURED", "Card product is not configured", "cardProductId unknown"),
)
ON_HOLD_REASONS = (
    "Stock item unavailable for product variant",
    "Awaiting card carrier artwork approval",
    "Machine maintenance at personalization site",
)
CANCEL_REASON = "Pull and change CANCEL accepted"
# SPEC §9 #8: the top-level status of a cancellation is unknown, so all three are exercised and
# the portal has to take terminality from details.status.
CANCELED_TOP_LEVEL_STATUSES = ("FAILED", "PENDING", "SUCCESSFUL")
TRACKING_TYPES = ("PRODUCTION", "SHIPMENT", "RETURN")


@dataclass(frozen=True)
class OrderRates:
    """How often each variation of the happy path is chosen for a new order."""

    exception_rate: float = 0.05
    cancel_rate: float = 0.03
    unknown_rate: float = 0.05
    standalone_rate: float = 0.05


@dataclass(frozen=True)
class Step:
    """One planned notification of an order: the business status and how it is dressed."""

    details_status: str
    top_status: str
    completes: bool = False
    shipment_status: str | None = None
    with_due_date: bool = False
    with_site: bool = False
    reason: str | None = None
    error: tuple[str, str] | None = None


@dataclass
class SimulatedOrder:
    """One card order being driven through its steps; `advance` builds the next item."""

    issuer_id: str
    card_id: str
    operation_id: str
    operation: str
    steps: list[Step]
    production_site: str
    carrier: str
    tracking_number: str
    due_in_days: int
    request_fields: dict[str, tuple[str, str]]  # name -> (value, "top" | "details" | "both")
    request_fields_only_early: bool
    tracking_type: str | None = None
    next_step: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.next_step >= len(self.steps)

    @property
    def has_more_after_current(self) -> bool:
        """True while the item just built is not the order's last one."""
        return self.next_step < len(self.steps)

    def advance(self, *, now: datetime) -> dict[str, Any]:
        """Build the item for the next step, stamped with `now` where a time is needed."""
        step = self.steps[self.next_step]
        if self.start_time is None:
            self.start_time = now
        if step.completes and self.end_time is None:
            self.end_time = now

        item: dict[str, Any] = {
            "operationId": self.operation_id,
            "operation": self.operation,
            "status": step.top_status,
            "startTime": _iso_millis(self.start_time),
        }
        if step.completes and self.end_time is not None:
            item["endTime"] = _iso_millis(self.end_time)
        item["cardId"] = self.card_id
        if step.error is not None:
            item["errorCode"], item["error"] = step.error

        details: dict[str, Any] = {"status": step.details_status}
        if self.tracking_type is not None:
            details["trackingType"] = self.tracking_type
        if step.reason is not None:
            details["reason"] = step.reason
        if step.with_due_date:
            due = self.start_time + timedelta(days=self.due_in_days)
            details["dueDate"] = due.date().isoformat()
        if step.with_site:
            details["productionSite"] = self.production_site
        if step.shipment_status is not None:
            details["shipment"] = {
                "carrier": self.carrier,
                "trackingNumber": self.tracking_number,
                "trackingUrl": tracking_url(carrier=self.carrier, number=self.tracking_number),
                "status": step.shipment_status,
                "message": SHIPMENT_MESSAGES[step.shipment_status],
            }

        carries_request_fields = not self.request_fields_only_early or self.next_step < 2
        if carries_request_fields:
            for name, (value, place) in self.request_fields.items():
                if place in ("top", "both"):
                    item[name] = value
                if place in ("details", "both"):
                    details[name] = value
        item["details"] = details

        self.next_step += 1
        self.items.append(item)
        return item


def tracking_url(*, carrier: str, number: str) -> str:
    if carrier == "ups":
        return f"https://www.ups.com/track?tracknum={number}"
    # Invented address: the sandbox must never point anyone at a real carrier's page for fake data.
    return f"https://tracking.example.com/{carrier}/{number}"


def order_create(
    *,
    issuer_id: str,
    card_id: str,
    operation_id: str,
    rng: random.Random,
    rates: OrderRates,
) -> SimulatedOrder:
    """Draw one order's whole path and its values from `rng` (the order's own generator)."""
    production_site = rng.choice(PRODUCTION_SITES)
    carrier = rng.choice(CARRIER_CODES)
    tracking_number = "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(18))
    due_in_days = rng.randint(3, 6)
    request_fields, only_early = _request_fields_draw(rng=rng, card_id=card_id)

    tracking_type: str | None = None
    if rng.random() < rates.standalone_rate:
        operation = "STANDALONE_TRACKING"
        tracking_type = rng.choice(TRACKING_TYPES)
        steps = _tracking_hub_steps(tracking_type=tracking_type, rng=rng)
    else:
        operation = "PRODUCE"
        steps = _produce_steps(rng=rng, rates=rates)

    return SimulatedOrder(
        issuer_id=issuer_id,
        card_id=card_id,
        operation_id=operation_id,
        operation=operation,
        steps=steps,
        production_site=production_site,
        carrier=carrier,
        tracking_number=tracking_number,
        due_in_days=due_in_days,
        request_fields=request_fields,
        request_fields_only_early=only_early,
        tracking_type=tracking_type,
    )


def _request_fields_draw(
    *, rng: random.Random, card_id: str
) -> tuple[dict[str, tuple[str, str]], bool]:
    """issuerRequestId / inputFileName: API orders, file orders, or none (SPEC §2.2, §8.6)."""
    kind = rng.choices(("api", "file", "none"), weights=(45, 35, 20))[0]
    if kind == "api":
        # As in SPEC §8.1: the id travels at the top level on the first two notifications only.
        return {"issuerRequestId": (f"req-{card_id}", "top")}, True
    if kind == "file":
        place = rng.choice(("top", "details", "both"))
        file_name = f"ORDERS_{rng.randint(1, 9999):04d}.csv"
        row_id = f"row-{rng.randint(1, 99999):05d}"
        return {"inputFileName": (file_name, place), "issuerRequestId": (row_id, place)}, False
    return {}, False


def _produce_steps(*, rng: random.Random, rates: OrderRates) -> list[Step]:
    """The PRODUCE path of SPEC §3 with its exception, cancel and on-hold variations."""
    requested = Step("CARD_PROD_REQUESTED", "PENDING")
    if rng.random() < rates.exception_rate:
        error_code, error, reason = rng.choice(DATA_EXCEPTIONS)
        return [
            requested,
            Step(
                "DATA_EXCEPTION", "FAILED", completes=True, reason=reason, error=(error_code, error)
            ),
        ]

    production = [
        Step("DATA_PREPARED", "PENDING", with_due_date=True),
        Step("CARD_PROD_READY", "PENDING", with_due_date=True, with_site=True),
        Step("CARD_PROD_ONGOING", "PENDING", with_site=True),
        Step("CARD_PROD_DONE", "PENDING", with_site=True),
    ]
    first_shipped = Step(
        "CARD_SHIPPED", "SUCCESSFUL", completes=True, shipment_status="IN_TRANSIT", with_site=True
    )
    shipping = [first_shipped]
    later_statuses = rng.choice((["DELIVERED"], ["OUT_FOR_DELIVERY", "DELIVERED"]))
    shipping += [
        Step("CARD_SHIPPED", "SUCCESSFUL", completes=True, shipment_status=status)
        for status in later_statuses
    ]

    if rng.random() < rates.cancel_rate:
        # Pull & change can only cancel before shipment: after REQUESTED or any production step.
        canceled_after = rng.randint(0, len(production))
        top_status = rng.choice(CANCELED_TOP_LEVEL_STATUSES)
        canceled = Step(
            "CARD_PROD_CANCELED",
            top_status,
            completes=top_status != "PENDING",
            reason=CANCEL_REASON,
        )
        steps = [requested, *production[:canceled_after], canceled]
    else:
        steps = [requested, *production, *shipping]

    if rng.random() < rates.unknown_rate:
        # The hold always sits right before a normal production step, never last.
        candidates = [
            index
            for index, step in enumerate(steps)
            if step.details_status in ("CARD_PROD_READY", "CARD_PROD_ONGOING", "CARD_PROD_DONE")
        ]
        if candidates:
            hold = Step(ON_HOLD_STATUS, "PENDING", reason=rng.choice(ON_HOLD_REASONS))
            steps.insert(rng.choice(candidates), hold)
    return steps


def _tracking_hub_steps(*, tracking_type: str, rng: random.Random) -> list[Step]:
    """STANDALONE_TRACKING sequencing per tracking type (SPEC §3, tracking hub)."""
    if tracking_type == "PRODUCTION":
        return [Step("CARD_SHIPPED", "SUCCESSFUL", completes=True, with_site=True)]
    if tracking_type == "RETURN":
        return [Step("CARD_RETURNED", "SUCCESSFUL", completes=True)]
    later_statuses = rng.choice((["DELIVERED"], ["OUT_FOR_DELIVERY", "DELIVERED"]))
    return [
        Step("CARD_SHIPPED", "PENDING", shipment_status="IN_TRANSIT"),
        *(
            Step("CARD_SHIPPED", "SUCCESSFUL", completes=True, shipment_status=status)
            for status in later_statuses
        ),
    ]


def _iso_millis(moment: datetime) -> str:
    """D1's timestamp style: 2025-01-17T06:28:02.492Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
