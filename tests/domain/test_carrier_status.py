"""The carrier status normaliser: every AfterShip tag and subtag, the old words, any casing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking.domain.carrier_status import (
    AFTERSHIP_SUBTAGS,
    AFTERSHIP_TAGS,
    CLASSES,
    SUBTAG_CLASSES,
    carrier_status_class,
    class_label,
)

# AfterShip's tags and the class each means.
TAG_CLASSES = {
    "Pending": "info_received",
    "InfoReceived": "info_received",
    "InTransit": "in_transit",
    "OutForDelivery": "out_for_delivery",
    "AttemptFail": "failed_attempt",
    "AvailableForPickup": "available_for_pickup",
    "Delivered": "delivered",
    "Exception": "exception",
    "Expired": "expired",
}


def _words(code: str) -> list[str]:
    """`InTransit_007` → ["In", "Transit", "007"]."""
    return re.findall(r"[A-Z][a-z]*|\d+", code)


def forms(code: str) -> list[str]:
    """The forms a carrier word may take: as published, UPPER_SNAKE, lower_snake, spaced, ..."""
    words = _words(code)
    return [
        code,
        code.upper(),
        code.lower(),
        "_".join(words).upper(),
        "_".join(words).lower(),
        " ".join(words),
        " ".join(words).lower(),
        " ".join(words).capitalize(),
        "-".join(words).lower(),
        f"  {code}  ",
    ]


def expected_class(code: str) -> str:
    if code in SUBTAG_CLASSES:
        return SUBTAG_CLASSES[code]
    return TAG_CLASSES[code.split("_")[0]]


def recased(text: str, flips: list[bool]) -> str:
    return (
        "".join(c.swapcase() if flips[i % len(flips)] else c for i, c in enumerate(text))
        if flips
        else text
    )


def test_every_published_tag_has_its_class():
    assert dict(AFTERSHIP_TAGS) == TAG_CLASSES


@pytest.mark.parametrize("code", [*AFTERSHIP_TAGS, *AFTERSHIP_SUBTAGS])
def test_every_tag_and_subtag_in_every_form(code):
    for form in forms(code):
        assert carrier_status_class(form) == expected_class(code), form


@settings(max_examples=300, deadline=None)
@given(
    code=st.sampled_from([*AFTERSHIP_TAGS, *AFTERSHIP_SUBTAGS]),
    flips=st.lists(st.booleans(), max_size=12),
    separator=st.sampled_from(["", "_", " ", "-", "__"]),
)
def test_any_casing_of_any_tag_or_subtag_reads_the_same(code, flips, separator):
    word = recased(separator.join(_words(code)), flips)
    assert carrier_status_class(word) == expected_class(code)


def test_subtags_that_mean_returned_to_sender_are_returned():
    assert carrier_status_class("Exception_010") == "returned"  # returning to sender
    assert carrier_status_class("EXCEPTION_011") == "returned"  # returned to sender
    assert carrier_status_class("exception_013") == "exception"  # lost
    assert carrier_status_class("Delivered_005") == "delivered"  # delivered to a neighbour
    assert carrier_status_class("InTransit_007") == "in_transit"  # departure scan


@pytest.mark.parametrize(
    ("word", "klass"),
    [
        # The portal's earlier upper-case words keep their meaning.
        ("LABEL_CREATED", "info_received"),
        ("INFO_RECEIVED", "info_received"),
        ("PENDING", "info_received"),
        ("PICKED_UP", "in_transit"),
        ("IN_TRANSIT", "in_transit"),
        ("DELAYED", "in_transit"),
        ("EXCEPTION", "exception"),
        ("OUT_FOR_DELIVERY", "out_for_delivery"),
        ("FAILED_ATTEMPT", "failed_attempt"),
        ("DELIVERY_FAILED", "failed_attempt"),
        ("UNDELIVERABLE", "failed_attempt"),
        ("AVAILABLE_FOR_PICKUP", "available_for_pickup"),
        ("DELIVERED", "delivered"),
        ("RETURNED_TO_SENDER", "returned"),
        ("RETURNED", "returned"),
        # Spaced words and carriers' own words.
        ("In transit", "in_transit"),
        ("Out for delivery", "out_for_delivery"),
        ("Return to sender", "returned"),
        ("Livré", "delivered"),
        ("En cours de livraison", "out_for_delivery"),
        ("ENTREGADO", "delivered"),
        ("En reparto", "out_for_delivery"),
        ("Zugestellt", "delivered"),
        ("DL", "delivered"),
        ("held at customs", "exception"),
    ],
)
def test_old_words_and_carrier_words(word, klass):
    assert carrier_status_class(word) == klass


@pytest.mark.parametrize(
    "word", ["Colis en attente de tri", "ZZ_999", "Weird_12", "42", "Delivered?!maybe", "🚚"]
)
def test_a_word_never_seen_is_unknown_never_an_error(word):
    assert carrier_status_class(word) == "unknown"


@pytest.mark.parametrize("word", [None, "", "   ", 7, {"status": "Delivered"}])
def test_no_carrier_status_is_no_class(word):
    assert carrier_status_class(word) == ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_has_exactly_one_class(text):
    assert carrier_status_class(text) in {"", *CLASSES}


def test_every_class_has_words_for_staff():
    assert all(class_label(klass) for klass in CLASSES)


def test_docs_rules_has_the_carrier_table_with_every_class():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    for klass in CLASSES:
        assert f"| `{klass}` |" in text, klass
