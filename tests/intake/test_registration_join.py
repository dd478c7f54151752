"""D1's first word joins the order the issuer registered before it: by operationId, else by
issuerRequestId (D1's correlation id), else by cardId when exactly one order of the card waits.

Run on SQLite and on PostgreSQL (DATABASE_URL): the two ingest engines must join alike.
"""

from __future__ import annotations

import pytest

from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_client
from tracking.models import CardOrder

pytestmark = pytest.mark.django_db

CARD = "1234567890123452"  # a numeric card id passing Luhn: joined like any other


def item(operation_id: str, *, request_id: str = "", start: str = "2026-03-05T09:00:00Z") -> dict:
    payload = {
        "operationId": operation_id,
        "operation": "PRODUCE",
        "status": "PENDING",
        "startTime": start,
        "cardId": CARD,
        "details": {"status": "CARD_PROD_REQUESTED"},
    }
    if request_id:
        payload["issuerRequestId"] = request_id
    return payload


@pytest.fixture
def register(issuer, staff_user):
    client = read_api_client(staff_user)

    def send(**fields) -> int:
        body = {"issuer_id": spec.ISSUER_ID, "card_id": CARD, **fields}
        answer = client.post("/api/v1/orders/", body, format="json")
        assert answer.status_code == 201, answer.content
        return answer.json()["id"]

    return send


@pytest.fixture
def post(post_notification):
    def send(*items: dict) -> None:
        response = post_notification({"operations": list(items)})
        assert response.status_code == 204, response.content

    return send


def operation_of(order_id: int) -> tuple[str, int]:
    order = CardOrder.objects.get(pk=order_id)
    return order.operation_id, order.event_count


def test_an_order_registered_with_its_operation_id_is_joined_by_it(register, post):
    waiting = register(issuer_request_id="row-1")
    mine = register(operation_id="op-mine", issuer_request_id="row-2")

    post(item("op-mine", request_id="row-1"))

    # The operationId decides, whatever the correlation id says; the other order still waits.
    assert operation_of(mine) == ("op-mine", 1)
    assert operation_of(waiting) == ("", 0)


def test_an_order_is_joined_by_d1_correlation_id(register, post):
    without_operation = register(issuer_request_id="row-1")
    other = register(operation_id="op-other", issuer_request_id="row-2")

    post(item("op-a", request_id="row-1"))

    assert operation_of(without_operation) == ("op-a", 1)
    assert operation_of(other) == ("op-other", 0)


def test_an_order_registered_with_another_operation_id_is_joined_by_correlation_id(register, post):
    # The id D1 answered the order with, when its notifications use another one.
    answered = register(operation_id="op-from-order-answer", issuer_request_id="row-2")

    post(item("op-b", request_id="row-2"))

    assert operation_of(answered) == ("op-b", 1)
    assert CardOrder.objects.count() == 1


def test_the_correlation_id_inside_details_joins_too(register, post):
    without_operation = register(issuer_request_id="row-1")
    other = register(operation_id="op-other", issuer_request_id="row-2")
    sent = item("op-a")
    sent["details"]["issuerRequestId"] = "row-1"

    post(sent)

    assert operation_of(without_operation) == ("op-a", 1)
    assert operation_of(other) == ("op-other", 0)


def test_the_only_waiting_order_of_a_card_is_joined_by_the_card(register, post):
    waiting = register(issuer_request_id="row-1")

    post(item("op-a", request_id="row-other"))

    assert operation_of(waiting) == ("op-a", 1)
    assert CardOrder.objects.count() == 1


def test_two_waiting_orders_of_a_card_without_a_matching_correlation_id_join_neither(
    register, post
):
    without_operation = register(issuer_request_id="row-1")
    other = register(operation_id="op-other", issuer_request_id="row-2")

    post(item("op-a"))

    assert operation_of(without_operation) == ("", 0)
    assert operation_of(other) == ("op-other", 0)
    assert operation_of(CardOrder.objects.get(operation_id="op-a").pk) == ("op-a", 1)


def test_an_order_registered_with_an_operation_id_is_not_joined_by_the_card_alone(register, post):
    mine = register(operation_id="op-mine")

    post(item("op-a"))

    assert operation_of(mine) == ("op-mine", 0)
    assert CardOrder.objects.count() == 2


def test_two_new_operations_of_a_card_in_one_batch_join_by_correlation_id(register, post):
    without_operation = register(issuer_request_id="row-1")
    other = register(operation_id="op-other", issuer_request_id="row-2")

    post(item("op-b", request_id="row-2"), item("op-a", request_id="row-1"))

    assert operation_of(without_operation) == ("op-a", 1)
    assert operation_of(other) == ("op-b", 1)
    assert CardOrder.objects.count() == 2


def test_two_new_operations_of_a_card_in_one_batch_join_the_one_waiting_order(register, post):
    waiting = register()

    post(
        item("op-newer", start="2026-03-06T09:00:00Z"),
        item("op-older", start="2026-03-05T09:00:00Z"),
    )

    # The newest by D1's times: what a registration made after D1 spoke would find.
    assert operation_of(waiting) == ("op-newer", 1)
    assert CardOrder.objects.count() == 2


def test_a_correlation_id_join_leaves_the_card_join_for_the_rest(register, post):
    by_card = register()
    by_request = register(operation_id="op-from-order-answer", issuer_request_id="row-1")

    post(item("op-a", request_id="row-1"), item("op-b"))

    assert operation_of(by_request) == ("op-a", 1)
    assert operation_of(by_card) == ("op-b", 1)


def test_a_registration_after_d1_spoke_finds_the_operation_of_its_correlation_id(
    issuer, staff_user, post
):
    post(
        item("op-a", request_id="row-1", start="2026-03-05T09:00:00Z"),
        item("op-b", request_id="row-2", start="2026-03-06T09:00:00Z"),
    )
    body = {"issuer_id": spec.ISSUER_ID, "card_id": CARD, "issuer_request_id": "row-1"}

    answer = read_api_client(staff_user).post("/api/v1/orders/", body, format="json")

    assert answer.status_code == 200, answer.content
    assert answer.json()["operation_id"] == "op-a"  # not the newer op-b
