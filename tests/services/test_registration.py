"""Registering the orders an issuer placed: the API's answers, idempotency, permissions, the bulk
form and its limit, and how a registered order meets D1's first word about it."""

from __future__ import annotations

import copy

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from tests.conftest import make_staff
from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_token
from tracking.models import AuditEntry, CardOrder, Issuer
from tracking.services import roles

pytestmark = pytest.mark.django_db

URL = "/api/v1/orders/"
ORDER = {
    "issuer_id": spec.ISSUER_ID,
    "card_id": "card-000123",
    "operation_id": "op-7f3c9a12e4b54d01",
    "issuer_request_id": "req-own-0001",
    "input_file_name": "OWN_ORDERS_01.csv",
    "due_date": "2026-03-09",
}


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {read_api_token(user)}")
    return client


@pytest.fixture
def integration(db, issuer) -> APIClient:
    """An integration's login holding only "register orders" and reading orders."""
    user = make_staff("integration", None)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["register_cardorder", "view_cardorder"])
    )
    return token_client(user)


def test_a_new_order_answers_201_and_the_same_order_again_200(integration):
    first = integration.post(URL, ORDER, format="json")
    again = integration.post(URL, ORDER, format="json")

    assert first.status_code == 201, first.content
    assert again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert CardOrder.objects.count() == 1


def test_a_registration_through_the_api_is_audited_for_its_caller(integration):
    integration.post(URL, ORDER, format="json", REMOTE_ADDR="198.51.100.7")
    integration.post(URL, [ORDER, {**ORDER, "card_id": "card-000999"}], format="json")

    single, bulk = AuditEntry.objects.filter(action="orders.register").order_by("pk")
    assert single.username == bulk.username == "integration"
    assert single.ip_address == "198.51.100.7"
    assert (single.details["rows"], single.details["created"]) == (1, 1)
    assert (bulk.details["rows"], bulk.details["created"], bulk.details["existing"]) == (2, 1, 1)


def test_a_registered_order_says_plainly_that_d1_has_said_nothing_yet(integration):
    body = integration.post(URL, ORDER, format="json").json()

    assert body["awaiting_first_event"] is True
    assert body["production_status"] == ""
    assert body["event_count"] == 0
    assert "no events from D1 yet" in body["state_summary"]
    assert body["issuer_request_id"] == "req-own-0001"
    assert body["due_date"] == "2026-03-09"


def test_another_operation_of_the_same_card_is_another_order(integration):
    assert integration.post(URL, ORDER, format="json").status_code == 201
    reorder = {**ORDER, "operation_id": "op-reorder-0002"}
    assert integration.post(URL, reorder, format="json").status_code == 201
    assert CardOrder.objects.filter(card_id="card-000123").count() == 2


def test_registration_never_overwrites_what_d1_said(integration, post_notification, order_state):
    post_notification(spec.E11)  # D1 said: FAILED, its own issuerRequestId
    order = {
        "issuer_id": spec.ISSUER_ID,
        "card_id": "card-000999",
        "operation_id": "op-0f1e2d3c4b5a6978",
        "issuer_request_id": "req-mine",
        "input_file_name": "MINE.csv",
    }

    answer = integration.post(URL, order, format="json")

    # Another issuerRequestId for the same operation is a conflict: named, and nothing written.
    assert answer.status_code == 409
    assert answer.json()["conflicts"]["issuer_request_id"] == {
        "stored": "req-2026-03-03-0042",
        "registered": "req-mine",
        "reason": "differs from the stored value",
    }
    state = order_state("card-000999")
    assert state["issuer_request_id"] == "req-2026-03-03-0042"  # D1's, not the registration's
    assert state["production_status"] == "DATA_EXCEPTION"
    assert state["awaiting_first_event"] is False


def test_registration_fills_what_d1_left_blank(integration, post_notification, order_state):
    post_notification(spec.E11)
    order = {
        "issuer_id": spec.ISSUER_ID,
        "card_id": "card-000999",
        "operation_id": "op-0f1e2d3c4b5a6978",
        "input_file_name": "MINE.csv",
    }

    assert integration.post(URL, order, format="json").status_code == 200
    state = order_state("card-000999")
    assert state["issuer_request_id"] == "req-2026-03-03-0042"
    assert state["input_file_name"] == "MINE.csv"  # D1 never said one: the issuer's shows


def test_the_first_notification_joins_the_registered_order(integration, post_notification):
    order_id = integration.post(URL, ORDER, format="json").json()["id"]

    post_notification(spec.E1)

    order = CardOrder.objects.get()
    assert order.pk == order_id
    assert order.production_status == "CARD_PROD_REQUESTED"
    assert order.registered_at is not None
    # D1's issuerRequestId wins; the registered file name stays where D1 said none.
    assert order.issuer_request_id == "req-2026-03-02-0001"
    assert order.input_file_name == "OWN_ORDERS_01.csv"


def test_without_operation_id_the_first_notification_of_the_card_joins(
    integration, post_notification
):
    order = {k: v for k, v in ORDER.items() if k != "operation_id"}
    order_id = integration.post(URL, order, format="json").json()["id"]

    post_notification(spec.E2)

    joined = CardOrder.objects.get()
    assert joined.pk == order_id
    assert joined.operation_id == "op-7f3c9a12e4b54d01"
    assert joined.production_status == "DATA_PREPARED"


def test_without_operation_id_two_new_operations_at_once_join_the_newest(
    integration, post_notification
):
    order = {k: v for k, v in ORDER.items() if k != "operation_id"}
    order_id = integration.post(URL, order, format="json").json()["id"]
    first = spec.E1["operations"][0]
    later = copy.deepcopy(first) | {
        "operationId": "op-second-0002",
        "startTime": "2026-03-03T08:00:00.000Z",
    }

    post_notification({"operations": [later, first]})

    # As a registration made after D1 spoke would find it: the card's newest operation.
    joined = CardOrder.objects.get(pk=order_id)
    assert (joined.operation_id, joined.event_count) == ("op-second-0002", 1)
    assert not CardOrder.objects.filter(operation_id="").exists()
    assert CardOrder.objects.filter(card_id="card-000123").count() == 2


def test_without_operation_id_a_card_d1_already_told_about_is_that_order(
    integration, post_notification
):
    post_notification(spec.E1)
    order = {k: v for k, v in ORDER.items() if k not in ("operation_id", "issuer_request_id")}

    answer = integration.post(URL, order, format="json")

    assert answer.status_code == 200, answer.json()
    assert answer.json()["operation_id"] == "op-7f3c9a12e4b54d01"
    assert CardOrder.objects.count() == 1
    # With another issuerRequestId than D1's, the same row is a conflict on that order.
    clash = integration.post(URL, {**order, "issuer_request_id": "req-own-0001"}, format="json")
    assert clash.status_code == 409
    assert clash.json()["id"] == answer.json()["id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"card_id": None}, "card_id"),
        ({"card_id": "card with spaces"}, "card_id"),
        ({"card_id": "x" * 49}, "card_id"),
        ({"issuer_id": None}, "issuer_id"),
        ({"issuer_id": "SHORT"}, "issuer_id"),
        ({"issuer_id": "UNKNOWN001"}, "issuer_id"),
        ({"operation_id": "op/1"}, "operation_id"),
        ({"due_date": "next tuesday"}, "due_date"),
        ({"issuer_request_id": 42}, "issuer_request_id"),
        ({"colour": "blue"}, "non_field_errors"),
    ],
)
def test_bad_input_answers_400_naming_the_field(integration, change, field):
    body = {k: v for k, v in {**ORDER, **change}.items() if v is not None}

    answer = integration.post(URL, body, format="json")

    assert answer.status_code == 400
    assert field in answer.json(), answer.json()
    assert CardOrder.objects.count() == 0


def test_an_inactive_issuer_cannot_register(integration, issuer):
    Issuer.objects.filter(pk=issuer.pk).update(is_active=False)
    answer = integration.post(URL, ORDER, format="json")

    assert answer.status_code == 400
    assert answer.json()["issuer_id"] == [f"Unknown or inactive issuer {issuer.issuer_id}."]
    assert CardOrder.objects.count() == 0


def test_viewers_and_anonymous_callers_may_not_register(issuer):
    viewer = make_staff("viewer", roles.VIEWERS)

    assert token_client(viewer).post(URL, ORDER, format="json").status_code == 403
    assert APIClient().post(URL, ORDER, format="json").status_code in (401, 403)
    assert CardOrder.objects.count() == 0


def test_operators_may_register_by_token_and_by_session(issuer):
    operator = make_staff("operator", roles.OPERATORS)
    assert token_client(operator).post(URL, ORDER, format="json").status_code == 201

    session = APIClient(enforce_csrf_checks=False)
    session.force_login(operator)
    assert session.post(URL, {**ORDER, "card_id": "card-2"}, format="json").status_code == 201


# ---------------------------------------------------------------------------- bulk


def bulk(n: int, *, start: int = 0) -> list[dict]:
    return [
        {"issuer_id": spec.ISSUER_ID, "card_id": f"card-{i:06d}", "operation_id": f"op-{i:06d}"}
        for i in range(start, start + n)
    ]


def test_a_list_is_registered_in_one_go_with_counts(integration):
    first = integration.post(URL, bulk(300), format="json")
    second = integration.post(URL, bulk(300, start=200), format="json")

    assert first.status_code == 201
    assert first.json()["created"] == 300
    assert second.status_code == 201
    assert (second.json()["created"], second.json()["existing"]) == (200, 100)
    assert CardOrder.objects.count() == 500
    again = integration.post(URL, bulk(10), format="json")
    assert again.status_code == 200
    assert again.json()["created"] == 0


def test_a_repeated_row_in_one_list_is_one_order(integration):
    rows = bulk(2) + bulk(1)
    answer = integration.post(URL, rows, format="json").json()
    assert answer["created"] == 2
    assert answer["orders"][0]["id"] == answer["orders"][2]["id"]


def test_bad_rows_are_named_and_the_valid_rows_register(integration):
    rows = bulk(5)
    rows[1]["card_id"] = "bad card"
    rows[3] = {"issuer_id": spec.ISSUER_ID}
    rows[4] = "not an object"

    answer = integration.post(URL, rows, format="json")

    assert answer.status_code == 201
    bad = {row["index"]: row["errors"] for row in answer.json()["refused"]}
    assert set(bad) == {1, 3, 4}
    assert "card_id" in bad[1]
    assert "card_id" in bad[3]
    assert "non_field_errors" in bad[4]
    assert [o["index"] for o in answer.json()["orders"]] == [0, 2]
    assert set(CardOrder.objects.values_list("card_id", flat=True)) == {
        "card-000000",
        "card-000002",
    }


def test_a_list_of_only_bad_rows_answers_400(integration):
    answer = integration.post(URL, [{"card_id": "x"}, 7], format="json")

    assert answer.status_code == 400
    assert [row["index"] for row in answer.json()["rows"]] == [0, 1]
    assert CardOrder.objects.count() == 0


def test_the_bulk_limit_is_refused_whole(integration, settings):
    settings.REGISTRATION_BULK_MAX = 100

    over = integration.post(URL, bulk(101), format="json")
    at = integration.post(URL, bulk(100), format="json")

    assert over.status_code == 400
    assert "At most 100" in over.json()["non_field_errors"][0]
    assert at.status_code == 201
    assert CardOrder.objects.count() == 100


def test_the_default_bulk_limit_of_ten_thousand(integration):
    answer = integration.post(URL, bulk(10_000), format="json")
    assert answer.status_code == 201, answer.content[:300]
    assert answer.json()["created"] == 10_000
    assert integration.post(URL, bulk(10_001), format="json").status_code == 400
