"""Simulated card orders: the steps each one goes through, when, and the items D1 sends for them.

The path of an order (happy path, failures at any step, cancellation, holds, carrier re-attempts,
pull & change results, tracking hub: `d1sandbox.paths`), every value it carries and how long it
stays in each stage are drawn up front from the order's own random generator, so an order looks
the same whatever other orders run beside it. Only timestamps come from the clock passed at each
step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from d1sandbox.paths import (
    ON_HOLD_STATUS,
    OrderRates,
    Step,
    produce_steps_draw,
    tracking_hub_steps_draw,
)
from d1sandbox.vocabulary import (
    CARRIER_CODES,
    JAPANESE_CARRIER_CODES,
    digit_run,
    time_text,
)

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
# SPEC §3 "Terminal states".
TERMINAL_DETAILS_STATUSES = frozenset(
    {"CARD_SHIPPED", "DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_CANCELED", "CARD_RETURNED"}
)
PRODUCE = "PRODUCE"
STANDALONE_TRACKING = "STANDALONE_TRACKING"
UPDATE_ORDER = "UPDATE_ORDER"

PRODUCTION_SITES = (
    "PERSO-SITE-EU-01",
    "PERSO-SITE-EU-02",
    "PERSO-SITE-US-01",
    "PERSO-SITE-APAC-01",
)
TRACKING_TYPES = ("PRODUCTION", "SHIPMENT", "RETURN")


# How long an order stays in each stage, in seconds at --time-scale 1 (the median of a
# log-normal spread). Some sites are slower at some stages and some carriers slower to deliver,
# so a heat-map of site x stage and the ship-date predictions have something real to find.
STAGE_SECONDS = {
    "CARD_PROD_REQUESTED": 5.0,
    "DATA_PREPARED": 6.0,
    "CARD_PROD_READY": 8.0,
    "CARD_PROD_ONGOING": 12.0,
    "CARD_PROD_DONE": 8.0,
    "CARD_SHIPPED": 12.0,
    ON_HOLD_STATUS: 20.0,
}
SITE_STAGE_FACTORS = {
    ("PERSO-SITE-EU-02", "CARD_PROD_ONGOING"): 4.0,
    ("PERSO-SITE-US-01", "CARD_PROD_DONE"): 3.0,
    ("PERSO-SITE-APAC-01", "CARD_PROD_READY"): 3.0,
    ("PERSO-SITE-APAC-01", "CARD_PROD_ONGOING"): 1.5,
}
CARRIER_FACTORS = {"usps-iv-api": 2.0, "singapore-post": 2.5, "estafeta": 1.8, "sagawa": 1.5}
# Stages before the card reaches a site take the same time everywhere.
SITE_STAGES = frozenset({"CARD_PROD_READY", "CARD_PROD_ONGOING", "CARD_PROD_DONE"})
STAGE_SPREAD = 0.35
# A re-order of the card (replacement) is placed this long after the first order ended.
REISSUE_SECONDS = 10.0


def stage_seconds(
    *, stage: str, site: str, carrier: str, rng: random.Random | None = None
) -> float:
    """One draw of the time spent in `stage` at `site` (the median when rng is None)."""
    median = STAGE_SECONDS.get(stage, 5.0)
    if stage in SITE_STAGES:
        median *= SITE_STAGE_FACTORS.get((site, stage), 1.0)
    if stage == "CARD_SHIPPED":
        median *= CARRIER_FACTORS.get(carrier, 1.0)
    if rng is None:
        return median
    return median * math.exp(rng.gauss(0.0, STAGE_SPREAD))


@dataclass(frozen=True)
class Emitted:
    """One item an order sent: which operation it belongs to and its position in it."""

    operation_id: str
    operation: str
    position: int
    item: dict[str, Any]
    last_of_operation: bool


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
    placed_by_file: bool = False
    tracking_type: str | None = None
    delays: list[float] = field(default_factory=list)  # seconds after each step, scale 1
    late_copy_of: int | None = None  # a step whose PENDING copy D1 re-sends after the end
    silent: bool = False
    reissue: bool = False
    update_operation_id: str | None = None
    time_style: str = "z"
    next_step: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.next_step >= len(self.steps)

    @property
    def delay_after_current(self) -> float:
        """Seconds (scale 1) between the item just built and the next one."""
        return self.delays[self.next_step - 1] if self.next_step - 1 < len(self.delays) else 1.0

    def late_copy_position(self) -> int | None:
        """Position in the main operation of the step D1 must re-send late, if drawn."""
        if self.late_copy_of is None:
            return None
        return sum(1 for step in self.steps[: self.late_copy_of] if step.change_type is None)

    def last_pending_position(self) -> int | None:
        """Position of the last PENDING step (with details) before the first completion."""
        main = [step for step in self.steps if step.change_type is None]
        found = None
        for position, step in enumerate(main):
            if step.completes:
                return found
            if step.top_status == "PENDING" and step.details_status is not None:
                found = position
        return None

    def registration(self) -> dict[str, str]:
        """What the issuer knows when it places the order (the registration API's body).

        An order placed through the API got D1's operationId in the 202; one placed in a file
        did not, so only the card, the file and the row's request id are known.
        """
        body = {"issuer_id": self.issuer_id, "card_id": self.card_id}
        if not self.placed_by_file:
            body["operation_id"] = self.operation_id
        request_id = self.request_fields.get("issuerRequestId")
        file_name = self.request_fields.get("inputFileName")
        if request_id:
            body["issuer_request_id"] = request_id[0]
        if file_name:
            body["input_file_name"] = file_name[0]
        return body

    def advance(self, *, now: datetime) -> Emitted:
        """Build the item for the next step, stamped with `now` where a time is needed."""
        step = self.steps[self.next_step]
        if step.change_type is not None:
            return self._change_result(step=step, now=now)
        if self.start_time is None:
            self.start_time = now
        if step.completes and self.end_time is None:
            # Carrier updates after the completion carry the operation's times again: D1's
            # times tie, and only the shipment's life orders them.
            self.end_time = now

        item: dict[str, Any] = {
            "operationId": self.operation_id,
            "operation": self.operation,
            "status": step.top_status,
            "startTime": time_text(self.start_time, self.time_style),
        }
        if step.completes and self.end_time is not None:
            item["endTime"] = time_text(self.end_time, self.time_style)
        item["cardId"] = self.card_id
        if step.error is not None:
            item["errorCode"], item["error"] = step.error

        details: dict[str, Any] = {}
        if step.details_status is not None:
            details["status"] = step.details_status
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
                    "message": step.shipment_message,
                }

        main_steps = [s for s in self.steps[: self.next_step] if s.change_type is None]
        carries_request_fields = not self.request_fields_only_early or len(main_steps) < 2
        if carries_request_fields:
            for name, (value, place) in self.request_fields.items():
                if place in ("top", "both") or step.details_status is None:
                    item[name] = value
                if place in ("details", "both") and step.details_status is not None:
                    details[name] = value
        if step.details_status is not None:
            item["details"] = details

        position = len(main_steps)
        self.next_step += 1
        self.items.append(item)
        last = not any(s.change_type is None for s in self.steps[self.next_step :])
        return Emitted(self.operation_id, self.operation, position, item, last)

    def _change_result(self, *, step: Step, now: datetime) -> Emitted:
        """The UPDATE_ORDER result of a pull & change request (its own operation, SPEC §6.1)."""
        assert self.update_operation_id is not None and step.change_type is not None
        item: dict[str, Any] = {
            "operationId": self.update_operation_id,
            "operation": UPDATE_ORDER,
            "status": step.top_status,
            "startTime": time_text(now - timedelta(seconds=1), self.time_style),
            "endTime": time_text(now, self.time_style),
            "cardId": self.card_id,
        }
        if step.error is not None:
            item["errorCode"], item["error"] = step.error
        item["details"] = {"type": step.change_type, "reason": step.reason}
        self.next_step += 1
        self.items.append(item)
        return Emitted(self.update_operation_id, UPDATE_ORDER, 0, item, True)


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
    file_names: tuple[str, ...] = ("CARDS_20260305093015001.csv",),
    reissue_of: SimulatedOrder | None = None,
    digit_ids: bool = False,
    no_shipment: bool = False,
) -> SimulatedOrder:
    """Draw one order's whole path, its values and its stage times from `rng` (its own).

    `reissue_of` makes this the card's second PRODUCE operation (a replacement placed through
    the API): same card, a new operationId, never silent and never re-ordered again.
    `digit_ids`: the issuer's request ids are long digit runs (some pass the Luhn check).
    `no_shipment`: the issuer orders without a shipment service, so the order completes at
    CARD_PROD_DONE.
    """
    production_site = rng.choice(PRODUCTION_SITES)
    carrier = rng.choice(CARRIER_CODES)
    tracking_number = "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(18))
    due_in_days = rng.randint(3, 6)
    if reissue_of is None:
        request_fields, only_early, by_file = _request_fields_draw(
            rng=rng, card_id=card_id, file_names=file_names, digit_ids=digit_ids
        )
    else:
        request_id = (
            digit_run(seed_text=f"req:{operation_id}", length=16, luhn=True)
            if digit_ids
            else f"req-{operation_id}"
        )
        request_fields, only_early, by_file = (
            {"issuerRequestId": (request_id, "top")},
            True,
            False,
        )

    tracking_type: str | None = None
    late_copy_of: int | None = None
    update_operation_id: str | None = None
    if reissue_of is None and rng.random() < rates.standalone_rate:
        operation = STANDALONE_TRACKING
        tracking_type = rng.choice(TRACKING_TYPES)
        steps = tracking_hub_steps_draw(tracking_type=tracking_type, rng=rng)
    else:
        operation = PRODUCE
        steps, late_copy_of = produce_steps_draw(rng=rng, rates=rates, no_shipment=no_shipment)
        if any(step.change_type for step in steps):
            update_operation_id = f"upd-{operation_id[3:]}"

    delays = [
        stage_seconds(stage=step.stage, site=production_site, carrier=carrier, rng=rng)
        for step in steps
    ]
    # Drawn last, so that adding these rates does not change the paths drawn above.
    silent = operation == PRODUCE and reissue_of is None and rng.random() < rates.silent_rate
    ends_with_details = steps[-1].details_status is not None
    reissue = (
        operation == PRODUCE
        and reissue_of is None
        and ends_with_details
        and rng.random() < rates.reissue_rate
    )
    # Drawn after the rest for the same reason.
    if rng.random() < rates.japan_carrier_rate:
        carrier = rng.choice(JAPANESE_CARRIER_CODES)
    style_draw = rng.random()
    time_style = "z"
    if style_draw < rates.offset_time_rate:
        time_style = "offset"
    elif style_draw < rates.offset_time_rate + rates.zoneless_time_rate:
        time_style = "zoneless"
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
        placed_by_file=by_file,
        tracking_type=tracking_type,
        delays=delays,
        late_copy_of=late_copy_of,
        silent=silent,
        reissue=reissue,
        update_operation_id=update_operation_id,
        time_style=time_style,
    )


def _request_fields_draw(
    *, rng: random.Random, card_id: str, file_names: tuple[str, ...], digit_ids: bool = False
) -> tuple[dict[str, tuple[str, str]], bool, bool]:
    """issuerRequestId / inputFileName: API orders, file orders, or none (SPEC §2.2, §8.6).

    Returns the fields with where they travel, whether only the first two notifications carry
    them, and whether the order was placed in a file. A run's file orders share a few files.
    With `digit_ids` the request id is a 16 to 19 digit run, Luhn-valid half the time.
    """
    kind = rng.choices(("api", "file", "none"), weights=(45, 35, 20))[0]
    digit_request_id = digit_run(
        seed_text=f"req:{card_id}", length=rng.choice((16, 18, 19)), luhn=rng.random() < 0.5
    )
    if kind == "api":
        # As in SPEC §8.1: the id travels at the top level on the first two notifications only.
        request_id = digit_request_id if digit_ids else f"req-{card_id}"
        return {"issuerRequestId": (request_id, "top")}, True, False
    if kind == "file":
        place = rng.choice(("top", "details", "both"))
        file_name = rng.choice(file_names)
        row_id = digit_request_id if digit_ids else f"row-{card_id.removeprefix('card-')}"
        fields = {"inputFileName": (file_name, place), "issuerRequestId": (row_id, place)}
        return fields, False, True
    return {}, False, False
