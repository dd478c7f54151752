"""D1's on-demand answer in each shape it may take: `{"operations": [...]}`, a bare operation
object, a list; anything else is a failed attempt that keeps the body, masked and capped.

The D1 sandbox answers in the first shape only, so the other shapes are served by `responses`
(the shape is all these tests are about; the client's HTTP is tested against the sandbox).
"""

from __future__ import annotations

import json

import pytest
import responses

from tests.fixtures import spec_examples as spec
from tracking.d1.client import BODY_EXCERPT_CHARS, D1Config, production_status_operations
from tracking.models import CardOrder, ReconcileAttempt
from tracking.services.reconcile import order_reconcile

pytestmark = pytest.mark.django_db

CARD = "card-000123"
ANSWER_ITEM = {**spec.E2["operations"][0]}  # DATA_PREPARED, after the stored CARD_PROD_REQUESTED
PAN = "4111111111111111"


@pytest.fixture
def d1_config(settings, tmp_path) -> D1Config:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings.D1_API_BASE_URL = "https://d1.test/banking/v1"
    settings.D1_TOKEN_URL = "https://d1.test/authz/v1/oauth2/token"
    settings.D1_KEY_ID = "kid-test"
    settings.D1_PRIVATE_KEY_PATH = str(path)
    settings.D1_MAX_RETRIES = 0
    settings.D1_ISSUER_OVERRIDES = {}
    return D1Config.for_issuer(spec.ISSUER_ID)


@pytest.fixture
def requested(issuer, post_notification) -> CardOrder:
    assert post_notification(spec.E1).status_code == 204
    return CardOrder.objects.get(card_id=CARD)


def reconcile_with_answer(d1_config: D1Config, order: CardOrder, body: str) -> ReconcileAttempt:
    from tracking.d1 import client as d1_client

    d1_client._clients.clear()  # a client of this test's settings, not one cached before
    responses.post(d1_config.token_url, json={"access_token": "tok-1", "expires_in": 900})
    responses.get(
        f"{d1_config.api_base_url}/issuers/{spec.ISSUER_ID}/physicalCards/{CARD}/productionStatus",
        body=body,
        status=200,
        content_type="application/json",
    )
    order_reconcile(order_id=order.pk)
    return ReconcileAttempt.objects.filter(order=order).latest("pk")


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [{"operations": [ANSWER_ITEM]}, ANSWER_ITEM, [ANSWER_ITEM]],
    ids=["operations-object", "bare-object", "list"],
)
def test_each_shape_of_an_answer_corrects_the_order(d1_config, requested, answer):
    attempt = reconcile_with_answer(d1_config, requested, json.dumps(answer))

    assert (attempt.outcome, attempt.http_status, attempt.items_received) == ("changed", 200, 1)
    requested.refresh_from_db()
    assert requested.production_status == "DATA_PREPARED"


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"error": f"card {PAN} unknown", "pad": "x" * 5000}),
        json.dumps({"operations": {"cardId": CARD}}),
        json.dumps({"operations": [ANSWER_ITEM, f"card {PAN}"]}),
        json.dumps([ANSWER_ITEM, 42]),
        json.dumps(f"card {PAN}"),
        "42",
        f"<html>card {PAN}</html>",
    ],
    ids=[
        "other-object",
        "operations-object",
        "a-text-item",
        "list-with-a-number",
        "string",
        "number",
        "not-json",
    ],
)
def test_any_other_answer_is_an_attempt_error_keeping_the_body_masked(d1_config, requested, body):
    attempt = reconcile_with_answer(d1_config, requested, body)

    assert (attempt.outcome, attempt.http_status) == ("error", 200)
    assert "unreadable body" in attempt.error
    assert PAN not in attempt.error
    assert len(attempt.error) < BODY_EXCERPT_CHARS + 200
    if PAN in body:
        assert "************1111" in attempt.error
    requested.refresh_from_db()
    assert requested.production_status == "CARD_PROD_REQUESTED"  # nothing applied


def test_an_empty_answer_is_read_as_no_items():
    assert production_status_operations({"operations": []}) == []
    assert production_status_operations([]) == []
