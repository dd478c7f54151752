"""What a carrier's shipment status means: any word D1 passes on, as one class of a parcel's life.

D1 does not publish the values of `details.shipment.status` (SPEC §2.3). Its carrier codes are
AfterShip's courier slugs, so the likeliest words are AfterShip's tags (`InTransit`) and subtags
(`Delivered_001`); the carriers' own words and the portal's earlier upper-case words come too.
Every word is read in any casing or form (`InTransit`, `IN_TRANSIT`, `in_transit`,
`In transit`, `in-transit`) through declarative tables; a word found in none of them is the
class `unknown`: kept and shown as sent, counted, never an error by itself.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping

from django.utils.translation import gettext_lazy as _

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

# Each class's place in a parcel's life. D1's times decide which carrier update is current;
# this rank decides only when the times tie (carrier updates of one shipment share the
# operation's times), so the later stage of the life wins, never the order of arrival.
# A word never seen ranks lowest: on a tie a known word is the one shown.
CLASS_RANK: Mapping[str, int] = {
    UNKNOWN: 0,
    INFO_RECEIVED: 10,
    IN_TRANSIT: 30,
    EXCEPTION: 35,
    OUT_FOR_DELIVERY: 40,
    FAILED_ATTEMPT: 45,
    AVAILABLE_FOR_PICKUP: 50,
    EXPIRED: 60,
    DELIVERED: 90,
    RETURNED: 95,
}
CLASSES: tuple[str, ...] = tuple(CLASS_RANK)

# After these the carrier has nothing more to say.
FINAL_CLASSES = frozenset({DELIVERED, RETURNED})
# Real problems: the order goes to Exceptions.
PROBLEM_CLASSES = frozenset({EXCEPTION, RETURNED})

# The class in staff's words, and what it means.
CLASS_LABELS: Mapping[str, tuple[str, str]] = {
    INFO_RECEIVED: (_("Info received"), _("The carrier has the shipment's data, not the card.")),
    IN_TRANSIT: (_("In transit"), _("The carrier has the card; it is on its way.")),
    OUT_FOR_DELIVERY: (_("Out for delivery"), _("The card is on its last leg to the cardholder.")),
    FAILED_ATTEMPT: (
        _("Delivery failed"),
        _("The carrier tried to deliver the card and could not."),
    ),
    AVAILABLE_FOR_PICKUP: (
        _("Available for pickup"),
        _("The card waits at a pickup point for the cardholder."),
    ),
    DELIVERED: (_("Delivered"), _("The carrier reports the card delivered.")),
    EXCEPTION: (_("Carrier exception"), _("The carrier reports a problem: lost, damaged, held.")),
    RETURNED: (_("Returned"), _("The carrier is sending or has sent the card back.")),
    EXPIRED: (_("Tracking expired"), _("The carrier stopped reporting before delivery.")),
    UNKNOWN: (_("Not understood"), _("A carrier word the portal does not know; shown as sent.")),
}

# AfterShip's delivery statuses (tags), as published.
AFTERSHIP_TAGS: Mapping[str, str] = {
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
# AfterShip's published subtags (`<Tag>_<NNN>`); each is its tag's class unless listed in
# SUBTAG_CLASSES.
AFTERSHIP_SUBTAGS: tuple[str, ...] = (
    *(f"Pending_{n:03d}" for n in range(1, 7)),
    "InfoReceived_001",
    *(f"InTransit_{n:03d}" for n in range(1, 10)),
    "OutForDelivery_001",
    "OutForDelivery_003",
    "OutForDelivery_004",
    *(f"AttemptFail_{n:03d}" for n in range(1, 4)),
    "AvailableForPickup_001",
    *(f"Delivered_{n:03d}" for n in range(1, 6)),
    *(f"Exception_{n:03d}" for n in range(1, 19)),
    "Expired_001",
)
# Subtags whose meaning is another class than their tag's.
SUBTAG_CLASSES: Mapping[str, str] = {
    "Exception_010": RETURNED,  # returning to sender
    "Exception_011": RETURNED,  # returned to sender
}

# Other words, by their letters and digits only (see `word_key`): the portal's earlier words,
# generic milestones, and the common words of the carriers D1 lists (SPEC §2.3).
CARRIER_WORDS: Mapping[str, str] = {
    # The portal's earlier upper-case words.
    "labelcreated": INFO_RECEIVED,
    "inforeceived": INFO_RECEIVED,
    "pending": INFO_RECEIVED,
    "pickedup": IN_TRANSIT,
    "intransit": IN_TRANSIT,
    "delayed": IN_TRANSIT,  # late, but still on its way
    "exception": EXCEPTION,
    "outfordelivery": OUT_FOR_DELIVERY,
    "failedattempt": FAILED_ATTEMPT,
    "deliveryfailed": FAILED_ATTEMPT,
    "undeliverable": FAILED_ATTEMPT,
    "availableforpickup": AVAILABLE_FOR_PICKUP,
    "delivered": DELIVERED,
    "returnedtosender": RETURNED,
    "returned": RETURNED,
    # Generic milestones and tracking aggregators' words.
    "created": INFO_RECEIVED,
    "labelprinted": INFO_RECEIVED,
    "preshipment": INFO_RECEIVED,
    "manifested": INFO_RECEIVED,
    "shipmentinformationreceived": INFO_RECEIVED,
    "notfound": INFO_RECEIVED,
    "transit": IN_TRANSIT,
    "accepted": IN_TRANSIT,
    "shipped": IN_TRANSIT,
    "dispatched": IN_TRANSIT,
    "departed": IN_TRANSIT,
    "arrived": IN_TRANSIT,
    "enroute": IN_TRANSIT,
    "customscleared": IN_TRANSIT,
    "ondelivery": OUT_FOR_DELIVERY,
    "withcourier": OUT_FOR_DELIVERY,
    "attemptfail": FAILED_ATTEMPT,
    "attemptfailed": FAILED_ATTEMPT,
    "deliveryattempted": FAILED_ATTEMPT,
    "undelivered": FAILED_ATTEMPT,
    "noticeleft": FAILED_ATTEMPT,
    "readyforpickup": AVAILABLE_FOR_PICKUP,
    "awaitingcollection": AVAILABLE_FOR_PICKUP,
    "heldatpickuppoint": AVAILABLE_FOR_PICKUP,
    "deliveredtoneighbor": DELIVERED,
    "deliveredtoneighbour": DELIVERED,
    "signed": DELIVERED,
    "pickedupbycustomer": DELIVERED,
    "lost": EXCEPTION,
    "damaged": EXCEPTION,
    "heldatcustoms": EXCEPTION,
    "customshold": EXCEPTION,
    "addressincorrect": EXCEPTION,
    "refused": EXCEPTION,
    "returntosender": RETURNED,
    "returningtosender": RETURNED,
    "expired": EXPIRED,
    # FedEx status codes.
    "oc": INFO_RECEIVED,
    "pu": IN_TRANSIT,
    "it": IN_TRANSIT,
    "ar": IN_TRANSIT,
    "dp": IN_TRANSIT,
    "od": OUT_FOR_DELIVERY,
    "de": EXCEPTION,
    "dl": DELIVERED,
    "hl": AVAILABLE_FOR_PICKUP,
    "rs": RETURNED,
    # La Poste / Colissimo, Chronopost (French).
    "prisencharge": IN_TRANSIT,
    "encoursdacheminement": IN_TRANSIT,
    "encoursdelivraison": OUT_FOR_DELIVERY,
    "avise": FAILED_ATTEMPT,
    "disponibleenpointderetrait": AVAILABLE_FOR_PICKUP,
    "disponibleenbureaudeposte": AVAILABLE_FOR_PICKUP,
    "livre": DELIVERED,
    "distribue": DELIVERED,
    "retourexpediteur": RETURNED,
    "retourneallexpediteur": RETURNED,
    # Correos, SEUR, NACEX (Spanish).
    "admitido": IN_TRANSIT,
    "entransito": IN_TRANSIT,
    "enreparto": OUT_FOR_DELIVERY,
    "ausente": FAILED_ATTEMPT,
    "disponibleenoficina": AVAILABLE_FOR_PICKUP,
    "entregado": DELIVERED,
    "devuelto": RETURNED,
    "devolucion": RETURNED,
    "incidencia": EXCEPTION,
    # Deutsche Post / DHL (German).
    "inzustellung": OUT_FOR_DELIVERY,
    "zugestellt": DELIVERED,
    "ruecksendung": RETURNED,
    # Estafeta (Spanish, Mexico).
    "enproceso": IN_TRANSIT,
}

_SUBTAG = re.compile(r"^(?P<tag>.*?[A-Za-z])[\s_-]*(?P<number>\d{1,3})$")
_NOT_LETTER_OR_DIGIT = re.compile(r"[^a-z0-9]+")


def word_key(word: str) -> str:
    """A word by its letters and digits only, lower case and without accents."""
    plain = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    return _NOT_LETTER_OR_DIGIT.sub("", plain.lower())


_TAG_BY_KEY: Mapping[str, str] = {word_key(tag): tag for tag in AFTERSHIP_TAGS}
_SUBTAG_BY_KEY: Mapping[tuple[str, int], str] = {
    (word_key(code.rsplit("_", 1)[0]), int(code.rsplit("_", 1)[1])): klass
    for code, klass in SUBTAG_CLASSES.items()
}


def carrier_status_class(word: object) -> str:
    """The class of a carrier status as D1 sent it, in any casing or form; `unknown` else.

    Empty or missing is "" (no carrier status), not `unknown`.
    """
    if not isinstance(word, str) or not word.strip():
        return ""
    return _class_of(word)


# The fold asks for the class of the same few words again and again (every comparison of two
# carrier updates): a pure function of the word, remembered.
@functools.lru_cache(maxsize=4096)
def _class_of(word: str) -> str:
    key = word_key(word)
    if key in CARRIER_WORDS:
        return CARRIER_WORDS[key]
    if key in _TAG_BY_KEY:
        return AFTERSHIP_TAGS[_TAG_BY_KEY[key]]
    subtag = _SUBTAG.match(word.strip())
    if subtag:
        tag_key = word_key(subtag["tag"])
        number = int(subtag["number"])
        if (tag_key, number) in _SUBTAG_BY_KEY:
            return _SUBTAG_BY_KEY[(tag_key, number)]
        if tag_key in _TAG_BY_KEY:
            return AFTERSHIP_TAGS[_TAG_BY_KEY[tag_key]]
        if tag_key in CARRIER_WORDS:
            return CARRIER_WORDS[tag_key]
    return UNKNOWN


def class_rank(klass: str) -> int:
    """The class's place in a parcel's life; no carrier status ranks below every class."""
    return CLASS_RANK.get(klass, -1)


def class_label(klass: str) -> str:
    """The class in staff's words ("" for no carrier status)."""
    return str(CLASS_LABELS[klass][0]) if klass in CLASS_LABELS else ""
