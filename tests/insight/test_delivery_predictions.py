"""Expected delivery: D1's own date when it sends one, else the carrier's history; the carriers."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.fixtures.backoffice import Card, post_items, shipment
from tracking.domain.carriers import carrier_name, tracking_url_for
from tracking.insight.delivery_predictions import (
    d1_expected_delivery,
    order_expected_delivery,
)
from tracking.models import CardOrder

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("code", "name", "host"),
    [
        ("japan-post", "Japan Post", "trackings.post.japanpost.jp"),
        ("yamato", "Yamato Transport", "kuronekoyamato.co.jp"),
        ("sagawa", "Sagawa Express", "k2k.sagawa-exp.co.jp"),
    ],
)
def test_japans_carriers_have_names_and_tracking_links(code, name, host):
    assert carrier_name(code) == name
    url = tracking_url_for(code, "012345678901")
    assert host in url and "012345678901" in url


@pytest.mark.parametrize(
    ("shipment_keys", "expected"),
    [
        ({"expectedDeliveryDate": "2026-12-08"}, ("2026-12-08", "2026-12-08")),
        ({"estimatedDeliveryDate": "2026-12-09"}, ("2026-12-09", "2026-12-09")),
        # A time late on the 8th in UTC is the 9th in Tokyo.
        ({"expectedDelivery": "2026-12-08T20:00:00Z"}, ("2026-12-09", "2026-12-09")),
        (
            {"expectedDeliveryWindow": {"from": "2026-12-08", "to": "2026-12-10"}},
            ("2026-12-08", "2026-12-10"),
        ),
    ],
)
def test_d1s_expected_delivery_is_read_from_the_shipment(shipment_keys, expected, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    found = d1_expected_delivery({"carrier": "yamato", **shipment_keys})
    assert found.source == "d1"
    assert (found.earliest.isoformat(), found.latest.isoformat()) == expected


@pytest.mark.parametrize("value", ["", "soon", "2026-13-45", None, 20261208])
def test_what_is_not_a_date_is_no_expectation(value):
    assert d1_expected_delivery({"expectedDeliveryDate": value}) is None


def ship_and_deliver(issuer, number: int, *, shipped_at: dt.datetime, transit: dt.timedelta):
    card = Card(f"card-7{number:05d}", f"op-7{number:05d}", "BATCH_HIST.csv", f"req-7{number}")
    parcel = shipment(f"JP{number:010d}", carrier="yamato")
    post_items(
        issuer, [card.item("CARD_SHIPPED", op_status="SUCCESSFUL", shipment=parcel)], shipped_at
    )
    if transit:
        done = {**parcel, "status": "DELIVERED"}
        post_items(
            issuer,
            [card.item("CARD_SHIPPED", op_status="SUCCESSFUL", shipment=done)],
            shipped_at + transit,
        )
    return CardOrder.objects.get(card_id=card.card_id)


def test_the_expected_delivery_comes_from_the_carriers_history(issuer, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    start = timezone.now() - dt.timedelta(days=30)
    for n, days in enumerate([1, 2, 2, 2, 2, 2, 2, 3, 3, 4]):
        ship_and_deliver(
            issuer, n, shipped_at=start + dt.timedelta(hours=n), transit=dt.timedelta(days=days)
        )
    shipped_at = timezone.now() - dt.timedelta(hours=1)
    waiting = ship_and_deliver(issuer, 99, shipped_at=shipped_at, transit=dt.timedelta(0))

    expected = order_expected_delivery(waiting)

    assert expected.source == "history"
    local = timezone.localtime(shipped_at)
    assert expected.expected == (local + dt.timedelta(days=2)).date()
    assert expected.earliest <= expected.expected <= expected.latest
    assert expected.earliest >= (local + dt.timedelta(days=1)).date()
    assert expected.latest <= (local + dt.timedelta(days=4)).date()
    assert "Yamato Transport" in expected.basis


def test_too_little_history_is_no_expectation(issuer):
    order = ship_and_deliver(issuer, 1, shipped_at=timezone.now(), transit=dt.timedelta(0))
    assert order_expected_delivery(order) is None


def test_a_delivered_card_expects_nothing(issuer):
    order = ship_and_deliver(
        issuer, 1, shipped_at=timezone.now() - dt.timedelta(days=3), transit=dt.timedelta(days=1)
    )
    assert order_expected_delivery(order) is None
