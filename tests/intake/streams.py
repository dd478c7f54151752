"""Random sets of notification items for one card order, with D1's times, for property tests.

Times come from a few values only, so that ties of `endTime` and `startTime` are frequent and
the tie-breaks (ranks, then content) are exercised; contents vary in small ways (messages, error
codes) so that two items can tie on every time and rank yet differ.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

CARD_ID = "card-prop-0001"
OPERATION_ID = "op-prop-0001"
STEPS = [
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
]
START_TIMES = ["2026-03-02T09:00:00.000Z", "2026-03-02T09:00:00.000Z", "2026-03-03T08:00:00.000Z"]
END_TIMES = ["2026-03-05T10:00:00.000Z", "2026-03-06T10:00:00.000Z", "2026-03-07T10:00:00.000Z"]
# The portal's earlier words, AfterShip tags and subtags in other casings, and words never seen.
CARRIER_STATUSES = [
    "IN_TRANSIT",
    "OUT_FOR_DELIVERY",
    "DELIVERED",
    "HELD_AT_CUSTOMS",
    "REROUTED",
    "InTransit",
    "AttemptFail",
    "Delivered_001",
    "exception_011",
    "out for delivery",
    "Colis en attente",
]


def operation_item(
    *,
    status: str,
    start: str = START_TIMES[0],
    end: str | None = None,
    details: dict | None = None,
    **top: Any,
) -> dict:
    """One PRODUCE item of the test order; `details=None` leaves `details` out."""
    item: dict[str, Any] = {
        "operationId": OPERATION_ID,
        "operation": "PRODUCE",
        "status": status,
        "startTime": start,
        "cardId": CARD_ID,
        **top,
    }
    if end is not None:
        item["endTime"] = end
    if details is not None:
        item["details"] = details
    return item


_start = st.sampled_from(START_TIMES)
_end = st.sampled_from(END_TIMES)
_maybe_end = st.none() | _end
_error = st.sampled_from(
    [{}, {"errorCode": "E_STOCK", "error": "No stock"}, {"errorCode": "E_DATA"}]
)


@st.composite
def _pending_step(draw) -> dict:
    """A step as it happens (or a late copy of it): PENDING, no endTime."""
    return operation_item(
        status="PENDING",
        start=draw(_start),
        details={"status": draw(st.sampled_from(STEPS))},
    )


@st.composite
def _completion(draw) -> dict:
    """The operation completes (or fails) at a normal step: endTime, maybe an error."""
    status = draw(st.sampled_from(["SUCCESSFUL", "FAILED"]))
    error = draw(_error) if status == "FAILED" else {}
    return operation_item(
        status=status,
        start=draw(_start),
        end=draw(_end),
        details={"status": draw(st.sampled_from(STEPS))},
        **error,
    )


@st.composite
def _failure(draw) -> dict:
    code = draw(st.sampled_from(["DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_CANCELED"]))
    status = "PENDING" if code == "CARD_PROD_CANCELED" else "FAILED"
    return operation_item(
        status=status,
        start=draw(_start),
        end=None if status == "PENDING" else draw(_maybe_end),
        details={"status": code, "reason": draw(st.sampled_from(["bad data", "cancelled"]))},
        **(draw(_error) if status == "FAILED" else {}),
    )


@st.composite
def _hold(draw) -> dict:
    return operation_item(
        status="PENDING",
        start=draw(_start),
        details={
            "status": draw(st.sampled_from(["CARD_PROD_ON_HOLD", "CARD_PROD_PAUSED"])),
            "reason": draw(st.sampled_from(["Stock item unavailable", "Awaiting artwork"])),
        },
    )


@st.composite
def _shipment_update(draw) -> dict:
    return operation_item(
        status="SUCCESSFUL",
        start=draw(_start),
        end=draw(_maybe_end),
        details={
            "status": "CARD_SHIPPED",
            "shipment": {
                "carrier": "ups",
                "trackingNumber": "1Z999AA10123456784",
                "status": draw(st.sampled_from(CARRIER_STATUSES)),
                "message": draw(st.sampled_from(["Scanned", "Back to depot", "Left at door"])),
            },
        },
    )


@st.composite
def _incomplete(draw) -> dict:
    """A result without details (or without details.status)."""
    details = draw(st.sampled_from([None, {"reason": "see errorCode"}]))
    return operation_item(
        status=draw(st.sampled_from(["FAILED", "SUCCESSFUL", "PENDING"])),
        start=draw(_start),
        end=draw(_maybe_end),
        details=details,
        **draw(_error),
    )


order_item = st.one_of(
    _pending_step(),
    _completion(),
    _failure(),
    _hold(),
    _shipment_update(),
    _incomplete(),
)
order_items = st.lists(order_item, min_size=1, max_size=8)


def batched(items: list, sizes: list[int]) -> list[list]:
    """`items` cut into deliveries of the drawn `sizes`, in order (what is left is dropped)."""
    deliveries, rest = [], list(items)
    for size in sizes:
        if rest:
            deliveries.append(rest[:size])
            rest = rest[size:]
    return deliveries
