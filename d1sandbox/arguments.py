"""The command line's argument types, and the order variations `feed` draws."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

ISSUER_ID = re.compile(r"^[A-Za-z0-9_-]{10}$")


def issuer_id_argument(value: str) -> str:
    if not ISSUER_ID.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a 10-character D1 issuerId")
    return value


def fraction_argument(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return number


def positive_int_argument(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def positive_float_argument(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


# The variations of orders that `feed` draws, as (flag, default, help).
FEED_VARIATIONS = (
    (
        "--failed-step-rate",
        0.03,
        "fraction of orders FAILED at a normal production step, each followed on the wire by "
        "a late PENDING copy of that step",
    ),
    (
        "--no-details-rate",
        0.02,
        "fraction of orders whose FAILED result comes without details",
    ),
    (
        "--hold-completion-rate",
        0.03,
        "fraction of orders with a CARD_PROD_ON_HOLD that ends in the completion",
    ),
    (
        "--reattempt-rate",
        0.05,
        "fraction of orders whose parcel goes back in transit after out-for-delivery",
    ),
    ("--prod-exception-rate", 0.02, "fraction of orders ending in CARD_PROD_EXCEPTION"),
    (
        "--no-shipment-rate",
        0.02,
        "fraction of orders that complete at CARD_PROD_DONE (no shipment service)",
    ),
    (
        "--update-order-rate",
        0.05,
        "fraction of orders with a pull & change request answered by UPDATE_ORDER "
        "(an accepted CANCEL then cancels the order)",
    ),
    (
        "--reissue-rate",
        0.03,
        "fraction of orders whose card is ordered again (a second PRODUCE operation, same "
        "cardId) once the first ended",
    ),
    (
        "--silent-rate",
        0.0,
        "fraction of orders whose every notification is dropped",
    ),
    (
        "--late-copy",
        0.05,
        "fraction of completed orders whose earlier PENDING item is sent again after the end",
    ),
    (
        "--carrier-exception-rate",
        0.03,
        "fraction of orders whose shipment ends in a carrier exception (Exception_004, ...)",
    ),
    (
        "--returned-rate",
        0.02,
        "fraction of orders whose parcel goes back to its sender after a failed attempt",
    ),
    ("--expired-rate", 0.01, "fraction of orders whose carrier stops tracking (Expired)"),
    (
        "--novel-word-rate",
        0.05,
        "fraction of shipments with a carrier word no table knows (HeldAtCustoms, Sorting) mid-way",
    ),
    (
        "--changed-copy-rate",
        0.05,
        "fraction of shipments whose last carrier update comes again with a new message and "
        "the same times",
    ),
    (
        "--japan-carrier-rate",
        0.1,
        "fraction of orders carried by japan-post, yamato or sagawa",
    ),
    ("--offset-time-rate", 0.1, "fraction of orders whose times are written with +09:00"),
    (
        "--zoneless-time-rate",
        0.05,
        "fraction of orders whose times carry no zone (UTC wall time: the issuer's zone by "
        "default)",
    ),
    (
        "--numeric-id-rate",
        0.2,
        "fraction of orders with a 16-digit Luhn-valid cardId and digit-run issuerRequestIds",
    ),
    (
        "--pair",
        0.05,
        "fraction of items sent in the same POST as the next item of their operation",
    ),
)


def timestamp_argument(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
