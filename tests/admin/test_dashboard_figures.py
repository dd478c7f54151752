"""Every dashboard figure equals the row count of the list it opens, over orders of every class.

The realistic back office plus orders of every status class: SUCCESSFUL at CARD_PROD_DONE,
FAILED at a normal step, a hold tied with progress, and shipped cards whose carrier used every
class of word (AfterShip tags, subtags, other casings, one word never seen).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from tests.fixtures.backoffice import PATH, Card, post_items, shipment
from tracking.admin.dashboard import TERMINAL_TITLES
from tracking.domain.statuses import NON_TERMINAL_STATUSES
from tracking.models import CardOrder, ReconcileAttempt
from tracking.selectors import order_queues
from tracking.selectors.figures import TERMINAL_GROUPS

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
CARRIER_WORDS = {
    "carrier-transit": "InTransit",
    "carrier-delivered": "Delivered_001",
    "carrier-attempt": "ATTEMPT_FAIL",
    "carrier-lost": "Exception_013",
    "carrier-returned": "Exception_011",
    "carrier-expired": "expired",
    "carrier-pickup": "Available for pickup",
    "carrier-van": "out_for_delivery",
    "carrier-novel": "Colis en attente de tri",
}


def _card(number: int, start: dt.datetime) -> Card:
    return Card(
        card_id=f"card-{number:06d}",
        operation_id=f"op-{number:04d}classes",
        file_name="BATCH_20261201_CLASSES.csv",
        request_id=f"req-classes-{number}",
        start=start.isoformat().replace("+00:00", "Z"),
    )


def _post(issuer, card: Card, now: dt.datetime) -> None:
    for offset, item, copies in card.items:
        post_items(issuer, [item] * copies, now + offset)


@pytest.fixture
def every_class(bo_issuer, orders) -> dict[str, str]:
    """Orders of every status class beside the realistic set; {name: card id}."""
    now = timezone.now()
    start = now - 3 * DAY
    end = (now - 2 * HOUR).isoformat().replace("+00:00", "Z")
    cards: dict[str, Card] = {}

    c = cards["done_successful"] = _card(500900, start)
    for i, status in enumerate(PATH[:-1]):
        c.at(-3 * DAY + i * HOUR, c.item(status))
    c.at(-2 * HOUR, {**c.item("CARD_PROD_DONE", op_status="SUCCESSFUL"), "endTime": end})

    c = cards["failed_at_ready"] = _card(500901, start)
    c.at(-3 * DAY, c.item("CARD_PROD_REQUESTED"))
    c.at(-2 * HOUR, {**c.item("CARD_PROD_READY", op_status="FAILED"), "endTime": end})

    c = cards["only_a_hold"] = _card(500903, start)
    c.at(-DAY, c.item("CARD_PROD_ON_HOLD", reason="Stock"))

    c = cards["hold_then_progress"] = _card(500902, start)
    c.at(-3 * DAY, c.item("CARD_PROD_READY"))
    c.at(-2 * DAY, c.item("CARD_PROD_ON_HOLD", reason="Stock"))
    c.at(-DAY, c.item("CARD_PROD_ONGOING"))

    for n, (name, word) in enumerate(CARRIER_WORDS.items()):
        c = cards[name] = _card(500910 + n, start)
        c.at(-3 * DAY, c.item("CARD_PROD_DONE"))
        shipped = c.item("CARD_SHIPPED", op_status="SUCCESSFUL")
        shipped["endTime"] = (now - 2 * DAY).isoformat().replace("+00:00", "Z")
        c.at(
            -2 * DAY, {**shipped, "details": {**shipped["details"], "shipment": shipment(f"T{n}")}}
        )
        update = c.item("CARD_SHIPPED", op_status="SUCCESSFUL")
        update["endTime"] = end
        update["details"]["shipment"] = shipment(f"T{n}", status=word)
        c.at(-HOUR, update)

    for card in cards.values():
        _post(bo_issuer, card, now)
    # D1's answers: one order corrected twice today, one a week ago, calls that changed nothing.
    corrected = CardOrder.objects.get(card_id=cards["hold_then_progress"].card_id)
    for ago, outcome in ((HOUR, "changed"), (2 * HOUR, "changed"), (3 * DAY, "changed")):
        ReconcileAttempt.objects.create(order=corrected, started_at=now - ago, outcome=outcome)
    for ago in (HOUR, 2 * DAY, 8 * DAY):
        ReconcileAttempt.objects.create(order=corrected, started_at=now - ago, outcome="unchanged")
    return {name: card.card_id for name, card in cards.items()}


def _figures(boss) -> dict[str, tuple[int, str]]:
    """Every figure on the dashboard with a link: id → (the number shown, the list it opens)."""
    response = boss.get("/admin/")
    assert response.status_code == 200
    figures, links = response.context["dashboard"], response.context["links"]
    found = {
        "open": (figures.open_orders, links["open"]),
        "exceptions": (figures.open_exceptions, links["exceptions"]),
        "stuck": (figures.total_stuck, links["stuck"]),
        "reconcile": (figures.needs_reconcile, links["reconcile"]),
        "silent": (figures.silent_orders, links["silent"]),
        "carrier_words_unknown": (
            figures.carrier_words_unknown_orders,
            links["carrier_word_unknown"],
        ),
    }
    for row in response.context["stage_rows"]:
        status = row["stage"].status or "none"
        found[f"stage:{status}"] = (row["stage"].orders, row["orders_url"])
        if row["stuck_url"]:
            found[f"stuck:{status}"] = (row["stage"].stuck, row["stuck_url"])
    for row, group in zip(response.context["terminal_rows"], TERMINAL_TITLES, strict=True):
        for window in ("24h", "7d"):
            found[f"terminal:{group}:{window}"] = (row["counts"][window], row["urls"][window])
    for row in response.context["queue_rows"]:
        found[f"queue:{row['queue'].key}"] = (row["count"], row["url"])
    for window in ("24h", "7d"):
        found[f"reconcile_changed:{window}"] = (
            figures.reconcile_changed[window],
            links[f"reconcile_changed_{window}"],
        )
    found["reconcile_attempts:7d"] = (figures.reconcile_attempts["7d"], links["reconcile_attempts"])
    found["deliveries_24h"] = (figures.last_24h.deliveries, links["deliveries_24h"])
    for row in response.context["hour_rows"]:
        hour = row["hour"]
        found[f"hour:{hour.hour:%H}:deliveries"] = (hour.deliveries, row["deliveries_url"])
        found[f"hour:{hour.hour:%H}:stale"] = (hour.stale, row["stale_url"])
        found[f"hour:{hour.hour:%H}:repeats"] = (
            hour.deliveries_with_duplicates,
            row["duplicates_url"],
        )
        found[f"hour:{hour.hour:%H}:refused"] = (hour.deliveries_refused, row["refused_url"])
    return found


def rows_listed(boss, url: str) -> list:
    """Every row of the list `url` opens (all pages at once)."""
    listed = boss.get(f"{url}{'&' if '?' in url else '?'}all=")
    assert listed.status_code == 200
    return list(listed.context["cl"].result_list)


FIGURES = [
    "open",
    "exceptions",
    "stuck",
    "reconcile",
    "silent",
    "carrier_words_unknown",
    *(f"stage:{s}" for s in NON_TERMINAL_STATUSES),
    "stage:none",  # orders known only by a hold code
    *(f"stuck:{s}" for s in NON_TERMINAL_STATUSES),
    *(f"terminal:{g}:{w}" for g in TERMINAL_GROUPS for w in ("24h", "7d")),
    *(f"queue:{key}" for key in order_queues.QUEUES),
    "reconcile_changed:24h",
    "reconcile_changed:7d",
    "reconcile_attempts:7d",
    "deliveries_24h",
]


@pytest.mark.parametrize("kind", ["deliveries", "stale", "repeats", "refused"])
def test_each_hours_figure_equals_the_rows_of_the_list_it_opens(boss, every_class, kind):
    figures = _figures(boss)
    hours = {key: value for key, value in figures.items() if key.endswith(f":{kind}")}
    assert len(hours) == 24
    assert any(shown for shown, _ in hours.values())
    for key, (shown, url) in hours.items():
        assert len(rows_listed(boss, url)) == shown, (key, url)


@pytest.mark.parametrize("figure", FIGURES)
def test_the_figure_equals_the_rows_of_the_list_it_opens(boss, every_class, figure):
    figures = _figures(boss)
    assert figure in figures, sorted(figures)
    shown, url = figures[figure]
    assert len(rows_listed(boss, url)) == shown, (figure, url)


def test_every_queue_is_on_the_dashboard_and_the_classes_land_where_they_belong(boss, every_class):
    figures = _figures(boss)
    assert {key for key in figures if key.startswith("queue:")} == {
        f"queue:{key}" for key in order_queues.QUEUES
    }
    html = boss.get("/admin/").content.decode().replace("&amp;", "&")
    for key in order_queues.QUEUES:
        assert f'href="{figures[f"queue:{key}"][1]}"' in html

    def cards_in(queue: str) -> set[str]:
        return {o.card_id for o in rows_listed(boss, f"/admin/tracking/cardorder/?queue={queue}")}

    cards = every_class
    assert cards["carrier-delivered"] in cards_in("delivered")
    assert cards["carrier-attempt"] in cards_in("delivery_failed")
    assert cards["carrier-returned"] in cards_in("returned")
    assert {cards["carrier-lost"], cards["carrier-returned"]} <= cards_in("exceptions")
    for quiet in ("carrier-novel", "carrier-transit", "carrier-pickup", "carrier-van"):
        assert cards[quiet] not in cards_in("exceptions"), quiet
    assert cards_in("carrier_word_unknown") >= {cards["carrier-novel"]}
    assert "Colis en attente de tri" in html  # the word, as sent
    # SUCCESSFUL at CARD_PROD_DONE is finished: not open, never stuck; FAILED is not open.
    for finished in ("done_successful", "failed_at_ready"):
        assert cards[finished] not in cards_in("open")
        assert cards[finished] not in cards_in("stuck")
    assert cards["failed_at_ready"] in cards_in("failed")
    assert CardOrder.objects.get(card_id=cards["hold_then_progress"]).reconcile_reason == (
        "hold_then_progress"
    )
    if settings.SHIPMENT_IN_TRANSIT_THRESHOLD < 2 * DAY:
        assert cards["carrier-transit"] in cards_in("in_transit_long")
    assert cards["carrier-delivered"] not in cards_in("in_transit_long")
