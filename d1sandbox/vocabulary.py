"""What D1 and carriers say on the wire, in the sandbox's own words: carrier statuses and the class
each one means, carrier codes, identifiers made of digits, and D1's ways of writing a time.

D1 does not publish its carrier statuses (SPEC §2.3, §9 #7); its carrier codes are AfterShip's
courier slugs, so the likeliest words are AfterShip's tags (`InTransit`) and subtags
(`InTransit_007`), with some carriers' own casings (`IN_TRANSIT`, `in_transit`, `In Transit`)
and words nobody's table knows (`HeldAtCustoms`). The sandbox keeps, for its own truth, the class
each word it sends means; `verify` compares the portal's class with it.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone

# The classes of a carrier status, in the sandbox's truth.
INFO_RECEIVED = "info_received"
IN_TRANSIT = "in_transit"
OUT_FOR_DELIVERY = "out_for_delivery"
FAILED_ATTEMPT = "failed_attempt"
AVAILABLE_FOR_PICKUP = "available_for_pickup"
DELIVERED = "delivered"
EXCEPTION = "exception"
RETURNED = "returned"
EXPIRED = "expired"
UNKNOWN = "unknown"
CARRIER_CLASSES = (
    INFO_RECEIVED,
    IN_TRANSIT,
    OUT_FOR_DELIVERY,
    FAILED_ATTEMPT,
    AVAILABLE_FOR_PICKUP,
    DELIVERED,
    EXCEPTION,
    RETURNED,
    EXPIRED,
    UNKNOWN,
)
# Classes that are a real problem of the order (they belong in Exceptions).
PROBLEM_CARRIER_CLASSES = frozenset({EXCEPTION, RETURNED})

# AfterShip's tags and the class each one means. `Pending` (a shipment the carrier has not
# scanned yet) only ever comes first in the sandbox's shipments, before the parcel moves.
AFTERSHIP_TAGS = {
    "Pending": INFO_RECEIVED,
    "InfoReceived": INFO_RECEIVED,
    "InTransit": IN_TRANSIT,
    "OutForDelivery": OUT_FOR_DELIVERY,
    "AttemptFail": FAILED_ATTEMPT,
    "AvailableForPickup": AVAILABLE_FOR_PICKUP,
    "Delivered": DELIVERED,
    "Exception": EXCEPTION,
    "Expired": EXPIRED,
}
# AfterShip's subtags the sandbox sends, each with its message. A subtag means its tag's class,
# except the exception subtags that say the parcel went back to its sender.
AFTERSHIP_SUBTAGS = {
    "Pending_001": (INFO_RECEIVED, "No information yet"),
    "InfoReceived_001": (INFO_RECEIVED, "Shipping label created, awaiting pick-up"),
    "InTransit_001": (IN_TRANSIT, "Shipment on the way"),
    "InTransit_002": (IN_TRANSIT, "Picked up by carrier"),
    "InTransit_003": (IN_TRANSIT, "Arrived at a sorting facility"),
    "InTransit_007": (IN_TRANSIT, "Departed the facility"),
    "OutForDelivery_001": (OUT_FOR_DELIVERY, "Out for delivery"),
    "OutForDelivery_003": (OUT_FOR_DELIVERY, "Courier will contact the addressee"),
    "AttemptFail_001": (FAILED_ATTEMPT, "Addressee not available"),
    "AttemptFail_002": (FAILED_ATTEMPT, "Business closed"),
    "AvailableForPickup_001": (AVAILABLE_FOR_PICKUP, "Ready for collection at the post office"),
    "Delivered_001": (DELIVERED, "Delivered, left at front door"),
    "Delivered_002": (DELIVERED, "Collected by the addressee"),
    "Delivered_003": (DELIVERED, "Delivered and signed for"),
    "Exception_001": (EXCEPTION, "Delivery exception"),
    "Exception_004": (EXCEPTION, "Shipment delayed for reasons beyond the carrier's control"),
    "Exception_006": (EXCEPTION, "Address incorrect, shipment held"),
    "Exception_013": (EXCEPTION, "Shipment lost"),
    "Exception_011": (RETURNED, "Returned to sender"),
    "Expired_001": (EXPIRED, "No tracking update for 30 days"),
}
# Carriers' own words the sandbox also sends (not AfterShip's), with their class.
CARRIER_OWN_WORDS = {
    "RETURNED_TO_SENDER": RETURNED,
    "Returned to sender": RETURNED,
}
# Words no table knows: a new carrier message type. Always mid-shipment, never its last word.
NOVEL_WORDS = ("HeldAtCustoms", "Sorting")
# The class each word the sandbox can send means (the other casings are derived below).
MESSAGES = {
    INFO_RECEIVED: "Shipment information received",
    IN_TRANSIT: "Picked up by carrier",
    OUT_FOR_DELIVERY: "Out for delivery",
    FAILED_ATTEMPT: "Delivery attempted, addressee absent",
    AVAILABLE_FOR_PICKUP: "Available for pick-up",
    DELIVERED: "Delivered, left at front door",
    EXCEPTION: "Delivery exception",
    RETURNED: "Returned to sender",
    EXPIRED: "No tracking update for 30 days",
    UNKNOWN: "Shipment status updated",
}
# A late copy of a carrier update that differs: the same status and times, a new message.
CHANGED_MESSAGES = {
    DELIVERED: "Delivered, signed for by the addressee",
    EXCEPTION: "Exception: the carrier is investigating",
    RETURNED: "Returned to sender: received back at the depot",
    EXPIRED: "Tracking closed by the carrier",
}

# Casings a word can travel in, besides AfterShip's own: (name, share of shipments).
WORD_FORMS = (("aftership", 0.7), ("upper_snake", 0.12), ("lower_snake", 0.08), ("spaced", 0.1))
FORM_NAMES = ("aftership", "upper_snake", "lower_snake", "spaced", "lower")

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
# AfterShip slugs of Japanese carriers, for a share of orders (an issuer shipping in Japan).
JAPANESE_CARRIER_CODES = ("japan-post", "yamato", "sagawa")

# How D1 writes a time: "z" 2026-03-05T09:30:15.002Z, "offset" with +09:00, "zoneless" without a
# zone (read in the issuer's zone, UTC by default, so the sandbox writes UTC's wall time).
TIME_STYLES = ("z", "offset", "zoneless")
JST = timezone(timedelta(hours=9))


def _words_of_tag(tag: str) -> list[str]:
    """CamelCase tag -> its words: "OutForDelivery" -> ["Out", "For", "Delivery"]."""
    words: list[str] = []
    for character in tag:
        if character.isupper() or not words:
            words.append(character)
        else:
            words[-1] += character
    return words


def word_in_form(tag: str, form: str) -> str:
    """An AfterShip tag written the way some carriers do (`IN_TRANSIT`, `in transit`, ...)."""
    words = _words_of_tag(tag)
    if form == "upper_snake":
        return "_".join(word.upper() for word in words)
    if form == "lower_snake":
        return "_".join(word.lower() for word in words)
    if form == "spaced":
        return " ".join(words)
    if form == "lower":
        return " ".join(word.lower() for word in words)
    return tag


def carrier_word_class(word: str) -> str:
    """The class the sandbox meant by a word it sent (`unknown` for a novel word)."""
    if word in AFTERSHIP_SUBTAGS:
        return AFTERSHIP_SUBTAGS[word][0]
    if word in CARRIER_OWN_WORDS:
        return CARRIER_OWN_WORDS[word]
    for tag, carrier_class in AFTERSHIP_TAGS.items():
        if word in {word_in_form(tag, form) for form in FORM_NAMES}:
            return carrier_class
    return UNKNOWN


_TAGS_BY_CLASS: dict[str, list[str]] = {}
for _tag, _class in AFTERSHIP_TAGS.items():
    _TAGS_BY_CLASS.setdefault(_class, []).append(_tag)
_SUBTAGS_BY_CLASS: dict[str, list[str]] = {}
for _subtag, (_class, _) in AFTERSHIP_SUBTAGS.items():
    _SUBTAGS_BY_CLASS.setdefault(_class, []).append(_subtag)


def carrier_word_draw(
    *, carrier_class: str, form: str, rng: random.Random, first: bool = False
) -> tuple[str, str]:
    """A word meaning `carrier_class`, in `form`, and a message for it: (status, message).

    AfterShip's form sends the tag or one of its subtags; the other forms write the tag in their
    casing; `returned` has no AfterShip tag, so it travels as a subtag or a carrier's own word.
    `Pending` is only drawn for a shipment's first update.
    """
    if carrier_class == UNKNOWN:
        return rng.choice(NOVEL_WORDS), MESSAGES[UNKNOWN]
    if carrier_class == RETURNED:
        word = rng.choice(["Exception_011", *CARRIER_OWN_WORDS])
        return word, MESSAGES[RETURNED]
    tags = [tag for tag in _TAGS_BY_CLASS[carrier_class] if first or tag != "Pending"]
    subtags = [tag for tag in _SUBTAGS_BY_CLASS[carrier_class] if first or "Pending" not in tag]
    if form == "aftership" and subtags and rng.random() < 0.5:
        subtag = rng.choice(subtags)
        return subtag, AFTERSHIP_SUBTAGS[subtag][1]
    tag = rng.choice(tags)
    if form != "aftership" and carrier_class == DELIVERED and rng.random() < 0.3:
        form = "lower"  # "delivered", as some carriers write it
    return word_in_form(tag, form), MESSAGES[carrier_class]


def word_form_draw(rng: random.Random) -> str:
    forms, weights = zip(*WORD_FORMS, strict=True)
    return rng.choices(forms, weights=weights)[0]


# ---------------------------------------------------------------------- identifiers
def luhn_check_digit(digits: str) -> str:
    """The digit that makes `digits` + it pass the Luhn check."""
    total = 0
    for position, character in enumerate(reversed(digits)):
        value = int(character)
        if position % 2 == 0:  # doubled: these are every other digit from the check digit's left
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def luhn_valid(digits: str) -> bool:
    return digits.isdigit() and len(digits) > 1 and luhn_check_digit(digits[:-1]) == digits[-1]


def digit_run(*, seed_text: str, length: int, luhn: bool) -> str:
    """A deterministic run of `length` digits from `seed_text`; Luhn-valid when `luhn`.

    The first digit is never 0, so the run reads like a card number (the hardest case for a
    portal that guards card numbers).
    """
    digest = hashlib.sha256(seed_text.encode()).hexdigest()
    body = str(int(digest, 16))[: length - 1]
    body = str(int(body[0]) % 9 + 1) + body[1:]
    if luhn:
        return body + luhn_check_digit(body)
    check = luhn_check_digit(body)
    return body + str((int(check) + 1) % 10)


def input_file_name(*, seed: int, run_number: int, number: int) -> str:
    """A file name with a long digit run: CARDS_20260305093015002.csv (a time to the ms)."""
    digest = int(hashlib.sha256(f"files:{seed}:{run_number}".encode()).hexdigest(), 16)
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=digest % (300 * 86400))
    return f"CARDS_{moment:%Y%m%d%H%M%S}{number:03d}.csv"


# ---------------------------------------------------------------------- times
def time_text(moment: datetime, style: str = "z") -> str:
    """D1's timestamp in one of its styles, to the millisecond."""
    millis = f"{moment.microsecond // 1000:03d}"
    if style == "offset":
        local = moment.astimezone(JST)
        return local.strftime("%Y-%m-%dT%H:%M:%S.") + millis + "+09:00"
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S.") + millis
    return text if style == "zoneless" else text + "Z"


def time_read(text: str, *, zone: timezone = UTC) -> datetime | None:
    """An instant from D1's text; a zone-less time is in `zone` (the issuer's, UTC by default)."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)
