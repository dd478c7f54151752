"""The paths an order can take, drawn from its own random generator: PRODUCE with its
variations (failures, holds, cancellation, pull & change), the shipment's life, the tracking hub.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from d1sandbox import vocabulary
from d1sandbox.vocabulary import (
    AVAILABLE_FOR_PICKUP,
    DELIVERED,
    EXCEPTION,
    EXPIRED,
    FAILED_ATTEMPT,
    IN_TRANSIT,
    INFO_RECEIVED,
    OUT_FOR_DELIVERY,
    RETURNED,
    UNKNOWN,
    carrier_word_draw,
)

# Hypothetical (SPEC §8): no on-hold code is published; it exercises the unknown-status rule.
ON_HOLD_STATUS = "CARD_PROD_ON_HOLD"
# The normal production steps an order can fail at or be held before (SPEC §3).
PRODUCTION_STEPS = ("DATA_PREPARED", "CARD_PROD_READY", "CARD_PROD_ONGOING", "CARD_PROD_DONE")
# A parcel back in transit after a failed delivery attempt says so.
REATTEMPT_MESSAGE = "Back to depot after a failed delivery attempt"
DATA_EXCEPTIONS = (
    (
        "DATA_VALIDATION_FAILED",
        "Delivery address country not allowed for program",
        "shipment.deliveryAddress.countryCode rejected",
    ),
    ("DATA_DECRYPTION_FAILED", "Encrypted card data could not be read", "encryptedData rejected"),
    ("PRODUCT_NOT_CONFIGURED", "Card product is not configured", "cardProductId unknown"),
)
# Invented failures of the personalization centre (SPEC publishes no errorCode list).
PRODUCTION_FAILURES = (
    ("PERSO_MACHINE_FAULT", "Personalization machine fault", "Chip encoding failed twice"),
    ("CARD_STOCK_MISSING", "Card body stock exhausted", "Plastic stock for product not available"),
    ("EMBOSSING_FAILED", "Embossing quality check failed", "Embossed name unreadable"),
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
# SPEC §6.1 pull & change types. The result's shape is not published: the sandbox sends the type
# in details.type, accepted as SUCCESSFUL and rejected as FAILED with errorCode/error and reason.
CHANGE_TYPES = ("CANCEL", "ACCELERATE", "REDIRECT", "ACCELERATE_AND_REDIRECT")
CHANGE_ACCEPTED_REASON = "Change applied by the personalization centre"
CHANGE_REJECTED = ("CHANGE_NOT_POSSIBLE", "Change refused at this production stage")


@dataclass(frozen=True)
class OrderRates:
    """How often each variation of the happy path is chosen for a new order."""

    exception_rate: float = 0.05
    cancel_rate: float = 0.03
    unknown_rate: float = 0.05  # holds that resume with the next step
    standalone_rate: float = 0.05
    failed_step_rate: float = 0.0  # FAILED at a normal step, with a late PENDING copy
    no_details_rate: float = 0.0  # FAILED result sent without details
    hold_completion_rate: float = 0.0  # a hold followed directly by the completion
    reattempt_rate: float = 0.0  # carrier: back in transit after out-for-delivery
    prod_exception_rate: float = 0.0  # CARD_PROD_EXCEPTION
    no_shipment_rate: float = 0.0  # completes at CARD_PROD_DONE (services.delivery NO_SHIPMENT)
    update_order_rate: float = 0.0  # a pull & change request answered by UPDATE_ORDER
    reissue_rate: float = 0.0  # the card is ordered again once this order ended
    silent_rate: float = 0.0  # every notification of the order is dropped
    carrier_exception_rate: float = 0.0  # the shipment ends in a carrier exception
    returned_rate: float = 0.0  # the parcel goes back to its sender
    expired_rate: float = 0.0  # the carrier stops tracking (Expired)
    novel_word_rate: float = 0.0  # a carrier word no table knows, mid-shipment
    changed_copy_rate: float = 0.0  # the last carrier update again, a new message, same times
    japan_carrier_rate: float = 0.0  # japan-post, yamato or sagawa carries the card
    offset_time_rate: float = 0.0  # the order's times written with +09:00
    zoneless_time_rate: float = 0.0  # the order's times written without a zone
    numeric_id_rate: float = 0.0  # 16-digit Luhn-valid cardId, digit-run request ids


@dataclass(frozen=True)
class Step:
    """One planned notification of an order: the business status and how it is dressed."""

    details_status: str | None
    top_status: str
    completes: bool = False
    shipment_status: str | None = None  # the carrier's word, as sent
    shipment_message: str | None = None
    shipment_class: str | None = None  # what the sandbox means by that word
    with_due_date: bool = False
    with_site: bool = False
    reason: str | None = None
    error: tuple[str, str] | None = None
    change_type: str | None = None  # an UPDATE_ORDER result, a separate operation of the card

    @property
    def stage(self) -> str:
        return self.details_status or ""


def produce_steps_draw(
    *, rng: random.Random, rates: OrderRates, no_shipment: bool = False
) -> tuple[list[Step], int | None]:
    """The PRODUCE path of SPEC §3 with its variations; also the step to copy late, if any."""
    requested = Step("CARD_PROD_REQUESTED", "PENDING")
    production = [
        Step("DATA_PREPARED", "PENDING", with_due_date=True),
        Step("CARD_PROD_READY", "PENDING", with_due_date=True, with_site=True),
        Step("CARD_PROD_ONGOING", "PENDING", with_site=True),
        Step("CARD_PROD_DONE", "PENDING", with_site=True),
    ]
    if rng.random() < rates.exception_rate:
        error_code, error, reason = rng.choice(DATA_EXCEPTIONS)
        failed = Step(
            "DATA_EXCEPTION", "FAILED", completes=True, reason=reason, error=(error_code, error)
        )
        return [requested, failed], None

    late_copy_of: int | None = None
    update_allowed = False
    if rng.random() < rates.failed_step_rate:
        # Failed at a normal step: that step's PENDING item, then its FAILED completion; D1
        # re-sends the PENDING item after the failure (a late copy).
        at = rng.randint(1, len(production))
        error_code, error, reason = rng.choice(PRODUCTION_FAILURES)
        failing = production[at - 1]
        failed = Step(
            failing.details_status,
            "FAILED",
            completes=True,
            reason=reason,
            error=(error_code, error),
            with_site=failing.with_site,
        )
        steps = [requested, *production[:at], failed]
        late_copy_of = at
    elif rng.random() < rates.no_details_rate:
        # A result that breaks the schema but can be correlated: FAILED without details.
        at = rng.randint(0, len(production))
        error_code, error, _ = rng.choice(PRODUCTION_FAILURES)
        failed = Step(None, "FAILED", completes=True, error=(error_code, error))
        steps = [requested, *production[:at], failed]
    elif rng.random() < rates.prod_exception_rate:
        at = rng.randint(2, len(production) - 1)  # after CARD_PROD_READY or CARD_PROD_ONGOING
        error_code, error, reason = rng.choice(PRODUCTION_FAILURES)
        exception = Step(
            "CARD_PROD_EXCEPTION",
            "FAILED",
            completes=True,
            reason=reason,
            error=(error_code, error),
            with_site=True,
        )
        steps = [requested, *production[:at], exception]
    elif rng.random() < rates.cancel_rate:
        steps = [requested, *production[: rng.randint(0, len(production))], _canceled(rng)]
    elif rng.random() < rates.no_shipment_rate or no_shipment:
        done = Step("CARD_PROD_DONE", "SUCCESSFUL", completes=True, with_site=True)
        steps = [requested, *production, done]
        update_allowed = True
    else:
        steps = [requested, *production, *_shipping_steps(rng=rng, rates=rates)]
        update_allowed = True

    if rng.random() < rates.unknown_rate:
        # A hold that resumes: it sits right before a normal production step, never last.
        candidates = [
            index
            for index, step in enumerate(steps)
            if step.details_status in PRODUCTION_STEPS[1:] and not step.completes
        ]
        if candidates:
            steps.insert(rng.choice(candidates), _hold(rng))
    elif rng.random() < rates.hold_completion_rate:
        # A hold that ends in the completion: the next thing D1 says completes the operation.
        first_completion = next(index for index, step in enumerate(steps) if step.completes)
        if first_completion > 1:
            steps.insert(first_completion, _hold(rng))

    if update_allowed and rng.random() < rates.update_order_rate:
        steps = _with_change(steps=steps, rng=rng)
    if late_copy_of is not None:
        late_copy_of = next(
            index
            for index, step in enumerate(steps)
            if step.details_status == steps[-1].details_status and step.top_status == "PENDING"
        )
    return steps, late_copy_of


def _canceled(rng: random.Random) -> Step:
    top_status = rng.choice(CANCELED_TOP_LEVEL_STATUSES)
    return Step(
        "CARD_PROD_CANCELED", top_status, completes=top_status != "PENDING", reason=CANCEL_REASON
    )


def _hold(rng: random.Random) -> Step:
    return Step(ON_HOLD_STATUS, "PENDING", reason=rng.choice(ON_HOLD_REASONS))


def _shipping_steps(*, rng: random.Random, rates: OrderRates) -> list[Step]:
    """CARD_SHIPPED (the completion) and the carrier updates after it, all with its times.

    The shipment's life in classes, each written in the order's casing (AfterShip's tags and
    subtags mostly); a novel word may come mid-way, never last. A changed late copy repeats
    the last word with a new message.
    """
    life = _shipment_life_draw(rng=rng, rates=rates)
    updates = _carrier_updates(life=life, rng=rng, rates=rates)
    first, *later = updates
    return [
        Step("CARD_SHIPPED", "SUCCESSFUL", completes=True, with_site=True, **first),
        *(Step("CARD_SHIPPED", "SUCCESSFUL", completes=True, **update) for update in later),
    ]


def _shipment_life_draw(*, rng: random.Random, rates: OrderRates) -> list[tuple[str, str | None]]:
    """The classes a parcel goes through, in order, with a message where it says more."""
    draw = rng.random()
    life: list[tuple[str, str | None]]
    if draw < rates.carrier_exception_rate:
        life = [(IN_TRANSIT, None), (EXCEPTION, None)]
    elif draw < rates.carrier_exception_rate + rates.returned_rate:
        life = [(IN_TRANSIT, None), (OUT_FOR_DELIVERY, None), (FAILED_ATTEMPT, None)]
        life.append((RETURNED, None))
    elif draw < rates.carrier_exception_rate + rates.returned_rate + rates.expired_rate:
        life = [(IN_TRANSIT, None), (EXPIRED, None)]
    elif rng.random() < rates.reattempt_rate:
        life = [
            (IN_TRANSIT, None),
            (OUT_FOR_DELIVERY, None),
            (FAILED_ATTEMPT, None),
            (IN_TRANSIT, REATTEMPT_MESSAGE),
            (OUT_FOR_DELIVERY, None),
            (DELIVERED, None),
        ]
    else:
        middle = rng.choice(([], [OUT_FOR_DELIVERY], [AVAILABLE_FOR_PICKUP]))
        life = [(IN_TRANSIT, None), *((c, None) for c in middle), (DELIVERED, None)]
    if rng.random() < 0.25:
        life.insert(0, (INFO_RECEIVED, None))
    if rng.random() < rates.novel_word_rate:
        life.insert(rng.randint(1, len(life) - 1), (UNKNOWN, None))
    return life


def _carrier_updates(
    *, life: list[tuple[str, str | None]], rng: random.Random, rates: OrderRates
) -> list[dict[str, str]]:
    """The shipment fields of each update: the word, its message and the class it means."""
    form = vocabulary.word_form_draw(rng)
    updates = []
    for index, (carrier_class, message) in enumerate(life):
        word, default_message = carrier_word_draw(
            carrier_class=carrier_class, form=form, rng=rng, first=index == 0
        )
        message = message or default_message
        if any(
            (update["shipment_status"], update["shipment_message"]) == (word, message)
            for update in updates
        ):
            # The same word again (a second delivery round): the carrier says which one it is.
            message = f"{message} (second attempt)"
        updates.append(
            {"shipment_status": word, "shipment_message": message, "shipment_class": carrier_class}
        )
    last = updates[-1]
    if last["shipment_class"] in vocabulary.CHANGED_MESSAGES and (
        rng.random() < rates.changed_copy_rate
    ):
        changed = vocabulary.CHANGED_MESSAGES[last["shipment_class"]]
        updates.append({**last, "shipment_message": changed})
    return updates


def _with_change(*, steps: list[Step], rng: random.Random) -> list[Step]:
    """Insert a pull & change result before shipment; an accepted CANCEL ends the order."""
    change_type = rng.choice(CHANGE_TYPES)
    accepted = rng.random() < 0.6
    # Pull & change is only possible before shipment (SPEC §3): after REQUESTED, before the
    # first completion.
    first_completion = next(index for index, step in enumerate(steps) if step.completes)
    at = rng.randint(1, first_completion)
    if accepted:
        result = Step(None, "SUCCESSFUL", reason=CHANGE_ACCEPTED_REASON, change_type=change_type)
    else:
        result = Step(
            None,
            "FAILED",
            reason=CHANGE_REJECTED[1],
            error=CHANGE_REJECTED,
            change_type=change_type,
        )
    if accepted and change_type == "CANCEL":
        # SPEC §6.1 (INFERRED): an accepted CANCEL shows up on the PRODUCE side as CANCELED.
        return [*steps[:at], result, _canceled(rng)]
    return [*steps[:at], result, *steps[at:]]


def tracking_hub_steps_draw(*, tracking_type: str, rng: random.Random) -> list[Step]:
    """STANDALONE_TRACKING sequencing per tracking type (SPEC §3, tracking hub)."""
    if tracking_type == "PRODUCTION":
        return [Step("CARD_SHIPPED", "SUCCESSFUL", completes=True, with_site=True)]
    if tracking_type == "RETURN":
        return [Step("CARD_RETURNED", "SUCCESSFUL", completes=True)]
    middle = rng.choice(([], [(OUT_FOR_DELIVERY, None)]))
    life = [(IN_TRANSIT, None), *middle, (DELIVERED, None)]
    first, *later = _carrier_updates(life=life, rng=rng, rates=OrderRates())
    return [
        Step("CARD_SHIPPED", "PENDING", **first),
        *(Step("CARD_SHIPPED", "SUCCESSFUL", completes=True, **update) for update in later),
    ]
