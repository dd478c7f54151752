"""The sandbox speaks like the real thing: carrier words and their classes, ids, times, issuers."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest

from d1sandbox.lifecycle import OrderRates
from d1sandbox.planner import DeliveryPlanner, DeliveryRates, Happened, SimulatedClock
from d1sandbox.vocabulary import (
    AFTERSHIP_SUBTAGS,
    AFTERSHIP_TAGS,
    CARRIER_CLASSES,
    CARRIER_CODES,
    DELIVERED,
    EXCEPTION,
    EXPIRED,
    FAILED_ATTEMPT,
    FORM_NAMES,
    JAPANESE_CARRIER_CODES,
    NOVEL_WORDS,
    RETURNED,
    UNKNOWN,
    carrier_word_class,
    carrier_word_draw,
    digit_run,
    luhn_valid,
    time_read,
    time_text,
    word_in_form,
)

EPOCH = datetime(2026, 11, 27, tzinfo=UTC)
NO_VARIATION = {name.name: 0.0 for name in fields(OrderRates)}
FILE_NAME = re.compile(r"^CARDS_\d{17}\.csv$")


def _items_by_operation(
    *, orders: int = 200, issuers: tuple[str, ...] = ("ISSUERX001",), **rates: Any
) -> dict[str, list[dict[str, Any]]]:
    no_shipment = rates.pop("no_shipment_issuers", frozenset())
    planner = DeliveryPlanner(
        issuer_ids=list(issuers),
        orders=orders,
        seed=5,
        run_number=1,
        order_rates=OrderRates(**{**NO_VARIATION, **rates}),
        delivery=DeliveryRates(),
        clock=SimulatedClock(epoch=EPOCH),
        no_shipment_issuers=no_shipment,
    )
    by_operation: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in planner.events():
        if isinstance(event, Happened):
            by_operation[event.key.operation_id].append(event.item)
    return by_operation


def _shipments(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        item["details"]["shipment"]
        for item in items
        if isinstance((item.get("details") or {}).get("shipment"), dict)
    ]


# ---------------------------------------------------------------------- words and classes
@pytest.mark.parametrize("tag", sorted(AFTERSHIP_TAGS))
@pytest.mark.parametrize("form", FORM_NAMES)
def test_every_tag_in_every_casing_means_its_class(tag: str, form: str) -> None:
    word = word_in_form(tag, form)

    assert carrier_word_class(word) == AFTERSHIP_TAGS[tag]


def test_the_casings_are_the_ones_carriers_use() -> None:
    assert [word_in_form("InTransit", form) for form in FORM_NAMES] == [
        "InTransit",
        "IN_TRANSIT",
        "in_transit",
        "In Transit",
        "in transit",
    ]
    assert word_in_form("OutForDelivery", "upper_snake") == "OUT_FOR_DELIVERY"
    assert word_in_form("Delivered", "lower") == "delivered"


def test_subtags_mean_their_tags_class_except_a_return_to_sender() -> None:
    for subtag, (carrier_class, message) in AFTERSHIP_SUBTAGS.items():
        tag = subtag.split("_")[0]
        expected = RETURNED if subtag == "Exception_011" else AFTERSHIP_TAGS[tag]
        assert carrier_word_class(subtag) == carrier_class == expected, subtag
        assert message
    assert {carrier_word_class(word) for word in NOVEL_WORDS} == {UNKNOWN}


def test_every_class_can_be_drawn_and_means_itself() -> None:
    rng = random.Random(1)
    for carrier_class in CARRIER_CLASSES:
        for form in FORM_NAMES[:4]:
            for _ in range(20):
                word, message = carrier_word_draw(carrier_class=carrier_class, form=form, rng=rng)
                assert carrier_word_class(word) == carrier_class, (word, form)
                assert message


def test_shipments_use_aftership_words_with_a_share_of_other_casings_and_novel_words() -> None:
    operations = _items_by_operation(orders=400, novel_word_rate=0.3)
    words = [shipment["status"] for items in operations.values() for shipment in _shipments(items)]
    aftership = {*AFTERSHIP_TAGS, *AFTERSHIP_SUBTAGS}

    assert {carrier_word_class(word) for word in words} <= set(CARRIER_CLASSES)
    share_aftership = sum(word in aftership for word in words) / len(words)
    assert 0.55 < share_aftership < 0.85
    assert {"IN_TRANSIT", "in_transit", "In Transit"} & set(words)
    assert any(re.match(r"^[A-Za-z]+_\d{3}$", word) for word in words), "subtags"
    assert set(NOVEL_WORDS) <= set(words)
    for items in operations.values():
        classes = [carrier_word_class(shipment["status"]) for shipment in _shipments(items)]
        if classes:
            assert classes[-1] != UNKNOWN, "a novel word never ends a shipment"
            assert classes[-1] == DELIVERED


@pytest.mark.parametrize(
    ("rate", "last_class"),
    [
        ("carrier_exception_rate", EXCEPTION),
        ("returned_rate", RETURNED),
        ("expired_rate", EXPIRED),
    ],
)
def test_shipments_that_end_badly_end_in_their_class(rate: str, last_class: str) -> None:
    operations = _items_by_operation(orders=40, **{rate: 1.0})

    for items in operations.values():
        classes = [carrier_word_class(s["status"]) for s in _shipments(items)]
        assert classes[-1] == last_class
        if last_class == RETURNED:
            assert FAILED_ATTEMPT in classes, "returned after a failed delivery attempt"


def test_a_changed_late_copy_repeats_the_last_word_with_a_new_message_and_the_same_times() -> None:
    operations = _items_by_operation(orders=40, changed_copy_rate=1.0)

    for items in operations.values():
        shipped = [item for item in items if item["details"]["status"] == "CARD_SHIPPED"]
        last, copy = shipped[-2:]
        assert copy["details"]["shipment"]["status"] == last["details"]["shipment"]["status"]
        assert copy["details"]["shipment"]["message"] != last["details"]["shipment"]["message"]
        assert (copy["startTime"], copy["endTime"]) == (last["startTime"], last["endTime"])


def test_a_share_of_orders_is_carried_by_japanese_carriers() -> None:
    operations = _items_by_operation(orders=200, japan_carrier_rate=0.3)
    carriers = Counter(
        _shipments(items)[0]["carrier"] for items in operations.values() if _shipments(items)
    )

    assert set(carriers) <= {*CARRIER_CODES, *JAPANESE_CARRIER_CODES}
    japanese = sum(carriers[code] for code in JAPANESE_CARRIER_CODES)
    assert 0.2 < japanese / sum(carriers.values()) < 0.4
    assert set(JAPANESE_CARRIER_CODES) <= set(carriers)


# ---------------------------------------------------------------------- identifiers
def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("1234567890123452")
    assert not luhn_valid("4111111111111112")
    runs = [digit_run(seed_text=str(n), length=16, luhn=n % 2 == 0) for n in range(50)]
    assert all(len(run) == 16 and run[0] != "0" for run in runs)
    assert [luhn_valid(run) for run in runs] == [n % 2 == 0 for n in range(50)]


def test_numeric_card_ids_pass_luhn_and_request_ids_and_file_names_are_long_digit_runs() -> None:
    operations = _items_by_operation(orders=300, numeric_id_rate=0.3)
    firsts = [items[0] for items in operations.values() if items[0]["operation"] == "PRODUCE"]
    numeric = [item for item in firsts if item["cardId"].isdigit()]

    assert 0.2 < len(numeric) / len(firsts) < 0.4
    assert all(len(item["cardId"]) == 16 and luhn_valid(item["cardId"]) for item in numeric)
    assert len({item["cardId"] for item in firsts}) == len(firsts), "still one card per order"
    request_ids = [
        item.get("issuerRequestId") or item["details"].get("issuerRequestId") for item in numeric
    ]
    digit_ids = [value for value in request_ids if value]
    assert digit_ids and all(value.isdigit() and len(value) >= 16 for value in digit_ids)
    assert any(luhn_valid(value) for value in digit_ids)
    assert any(not luhn_valid(value) for value in digit_ids)
    file_names = {
        item.get("inputFileName") or item["details"].get("inputFileName") for item in firsts
    } - {None}
    assert file_names and all(FILE_NAME.match(name) for name in file_names)


# ---------------------------------------------------------------------- times
def test_time_styles_name_the_same_instant() -> None:
    moment = datetime(2026, 3, 5, 9, 30, 15, 2000, tzinfo=UTC)

    assert time_text(moment) == "2026-03-05T09:30:15.002Z"
    assert time_text(moment, "offset") == "2026-03-05T18:30:15.002+09:00"
    assert time_text(moment, "zoneless") == "2026-03-05T09:30:15.002"
    assert {time_read(time_text(moment, style)) for style in ("z", "offset", "zoneless")} == {
        moment
    }


def test_orders_are_written_with_z_plus_nine_hours_or_no_zone() -> None:
    operations = _items_by_operation(orders=300, offset_time_rate=0.2, zoneless_time_rate=0.2)
    styles = Counter()
    for items in operations.values():
        start = items[0]["startTime"]
        style = "offset" if start.endswith("+09:00") else "z" if start.endswith("Z") else "none"
        styles[style] += 1
        for item in items:  # one order, one style
            assert item["startTime"][23:] == start[23:]
            if "endTime" in item:
                assert item["endTime"][23:] == start[23:]
                assert time_read(item["endTime"]) >= time_read(item["startTime"])

    assert set(styles) == {"z", "offset", "none"}
    assert 0.1 < styles["offset"] / 300 < 0.3 and 0.1 < styles["none"] / 300 < 0.3


# ---------------------------------------------------------------------- issuers
def test_an_issuer_without_shipment_gets_every_order_successful_at_card_prod_done() -> None:
    planner = DeliveryPlanner(
        issuer_ids=["ISSUERX001", "ISSUERX002"],
        orders=40,
        seed=5,
        run_number=1,
        order_rates=OrderRates(**NO_VARIATION),
        delivery=DeliveryRates(),
        clock=SimulatedClock(epoch=EPOCH),
        no_shipment_issuers=frozenset({"ISSUERX002"}),
    )
    last_items: dict[tuple[str, str], dict[str, Any]] = {}
    for event in planner.events():
        if isinstance(event, Happened):
            last_items[(event.key.issuer_id, event.key.operation_id)] = event.item
    ends = defaultdict(set)
    for (issuer_id, _), item in last_items.items():
        ends[issuer_id].add((item["details"]["status"], item["status"], "endTime" in item))

    assert ends["ISSUERX002"] == {("CARD_PROD_DONE", "SUCCESSFUL", True)}
    assert ends["ISSUERX001"] == {("CARD_SHIPPED", "SUCCESSFUL", True)}
