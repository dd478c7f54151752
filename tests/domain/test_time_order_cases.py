"""The six cases of D1's ordering rule, each posted in every arrival order through the webhook.

Each case is checked where staff and integrations look: the read API, the order page and the
Exceptions queue of the admin. The same set of items must give the same answer in every order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db

START = "2026-03-02T09:00:00.000Z"


def day(n: int) -> str:
    return f"2026-03-0{n}T10:00:00.000Z"


def op(card: str, status: str, details: dict | None, *, end: str | None = None, **top) -> dict:
    item = {
        "operationId": f"op-{card}",
        "operation": "PRODUCE",
        "status": status,
        "startTime": START,
        "cardId": card,
        **top,
    }
    if end:
        item["endTime"] = end
    if details is not None:
        item["details"] = details
    return item


def parcel(card: str, status: str, *, end: str, message: str = "") -> dict:
    shipment = {"carrier": "ups", "trackingNumber": "1Z999AA10123456784", "status": status}
    if message:
        shipment["message"] = message
    return op(card, "SUCCESSFUL", {"status": "CARD_SHIPPED", "shipment": shipment}, end=end)


@dataclass
class Case:
    items: list[dict]
    api: dict  # fields of the read API's order, exactly
    exception: bool  # in the admin's Exceptions queue
    page: list[str] = field(default_factory=list)  # text the order page shows
    not_on_page: list[str] = field(default_factory=list)

    @property
    def card(self) -> str:
        return self.items[0]["cardId"]


CASES = {
    "failure then a pending copy": Case(
        items=[
            op(
                "card-case-1",
                "FAILED",
                {"status": "CARD_PROD_ONGOING"},
                end=day(4),
                errorCode="E_PERSO",
                error="Chip module rejected",
            ),
            op("card-case-1", "PENDING", {"status": "CARD_PROD_ONGOING"}),
        ],
        api={
            "operation_status": "FAILED",
            "production_status": "CARD_PROD_ONGOING",
            "error_code": "E_PERSO",
            "error": "Chip module rejected",
            "end_time": "2026-03-04T10:00:00Z",
            "is_terminal": True,
        },
        exception=True,
        page=["E_PERSO", "Chip module rejected"],
    ),
    "completion then a pending copy": Case(
        items=[
            op("card-case-2", "SUCCESSFUL", {"status": "CARD_PROD_DONE"}, end=day(4)),
            op("card-case-2", "PENDING", {"status": "CARD_PROD_DONE"}),
        ],
        api={
            "operation_status": "SUCCESSFUL",
            "production_status": "CARD_PROD_DONE",
            "end_time": "2026-03-04T10:00:00Z",
            "error_code": "",
        },
        exception=False,
    ),
    "a carrier word never seen after a customs hold": Case(
        items=[
            parcel("card-case-3", "HELD_AT_CUSTOMS", end=day(5)),
            parcel("card-case-3", "CUSTOMS_RELEASED", end=day(6), message="Released"),
        ],
        api={"end_time": "2026-03-06T10:00:00Z"},
        # The latest word is not understood: shown as sent, no exception by itself.
        exception=False,
        page=["CUSTOMS_RELEASED", "Released", "Not understood"],
    ),
    "a customs hold after transit is a carrier exception": Case(
        items=[
            parcel("card-case-3b", "InTransit", end=day(5)),
            parcel("card-case-3b", "Exception_004", end=day(6), message="Held at customs"),
        ],
        api={"end_time": "2026-03-06T10:00:00Z"},
        exception=True,
        page=["Exception_004", "Carrier exception"],
    ),
    "back in transit after out for delivery": Case(
        items=[
            parcel("card-case-4", "IN_TRANSIT", end=day(5), message="Departed hub"),
            parcel("card-case-4", "OUT_FOR_DELIVERY", end=day(6), message="On the van"),
            parcel(
                "card-case-4",
                "IN_TRANSIT",
                end=day(7),
                message="Back to depot after a failed attempt",
            ),
        ],
        api={"end_time": "2026-03-07T10:00:00Z", "shipment_final": None},
        exception=False,
        page=["IN_TRANSIT", "Back to depot after a failed attempt"],
    ),
    "failed result without details": Case(
        items=[
            op("card-case-5", "PENDING", {"status": "CARD_PROD_REQUESTED"}),
            op(
                "card-case-5",
                "FAILED",
                None,
                end=day(3),
                errorCode="DATA_VALIDATION_FAILED",
                error="Delivery address country not allowed",
            ),
        ],
        api={
            "operation_status": "FAILED",
            "production_status": "CARD_PROD_REQUESTED",
            "error_code": "DATA_VALIDATION_FAILED",
            "needs_reconcile": True,
            "reconcile_reason": "incomplete_item",
            "is_terminal": True,
        },
        exception=True,
        page=["DATA_VALIDATION_FAILED", "Item without details"],
    ),
    "hold then completion": Case(
        items=[
            op(
                "card-case-6",
                "PENDING",
                {"status": "CARD_PROD_ON_HOLD", "reason": "Stock item unavailable"},
            ),
            op("card-case-6", "SUCCESSFUL", {"status": "CARD_SHIPPED"}, end=day(6)),
        ],
        api={
            "production_status": "CARD_SHIPPED",
            "operation_status": "SUCCESSFUL",
            "needs_reconcile": False,
            "reconcile_reason": "",
            "unknown_codes": ["CARD_PROD_ON_HOLD"],
            "has_unknown_status": False,
            "hold_code": "",
        },
        exception=False,
        page=["CARD_PROD_ON_HOLD"],  # still on the record
        not_on_page=["On hold:"],
    ),
}

ARRIVALS = [
    pytest.param(name, order, id=f"{name} {''.join(str(i) for i in order)}")
    for name, case in CASES.items()
    for order in itertools.permutations(range(len(case.items)))
]


@pytest.fixture
def staff_page():
    user = get_user_model().objects.create_superuser("lead", "lead@example.com", "lead-pw")
    client = Client()
    client.force_login(user)
    return client


def _api_view(order: dict) -> dict:
    view = dict(order)
    view["shipment_final"] = None  # not an API field; kept out of the comparison
    return view


@pytest.mark.parametrize(("name", "arrival"), ARRIVALS)
def test_every_arrival_order_gives_the_state_by_d1s_times(
    issuer, post_notification, order_state, staff_page, name, arrival
):
    case = CASES[name]
    for index in arrival:
        response = post_notification({"operations": [case.items[index]]})
        assert response.status_code == 204, response.content

    order = _api_view(order_state(case.card))
    assert {key: order.get(key) for key in case.api} == case.api
    if "back in transit" in name:
        assert order["shipment"]["status"] == "IN_TRANSIT"
        assert order["shipment"]["message"] == "Back to depot after a failed attempt"
    if "cannot rank" in name:
        assert order["shipment"]["status"] == "CUSTOMS_RELEASED"

    page = staff_page.get(f"/admin/tracking/cardorder/{order['id']}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    for expected in case.page:
        assert expected in text
    for unexpected in case.not_on_page:
        assert unexpected not in text

    queue = staff_page.get("/admin/tracking/cardorder/", {"queue": "exceptions"})
    assert (case.card in queue.content.decode()) is case.exception


def test_details_without_a_status_join_the_order_and_ask_d1(issuer, post_notification, order_state):
    bare = op("card-case-7", "PENDING", {"reason": "Awaiting artwork"})

    assert post_notification({"operations": [bare]}).status_code == 204

    order = order_state("card-case-7")
    assert (order["needs_reconcile"], order["reconcile_reason"]) == (True, "incomplete_item")
    assert order["event_count"] == 1


def test_an_item_that_cannot_be_correlated_is_still_refused(issuer, post_notification):
    lost = op("card/../7", "FAILED", None, end=day(3), errorCode="E_DATA")

    response = post_notification({"operations": [lost]})

    assert response.status_code == 400
    assert "cardId must match" in response.json()["error"]
    assert "details is required" in response.json()["error"]
