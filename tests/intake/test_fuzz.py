"""Fuzzing the trust boundary: no input makes the portal answer 5xx or lose an accepted item.

- schemathesis generates requests from our own OpenAPI schema (the webhook, the token
  endpoint, the read API), valid and invalid, and sends them through the real WSGI stack;
- hypothesis drives the item validator directly, and whole notification bodies through the
  webhook, checking that every item of an accepted body is stored (invalid ones as invalid).

Examples are bounded so that the module stays within a few seconds per test.
"""

from __future__ import annotations

import base64
import json
from functools import cache

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.db.models import Sum
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_token
from tests.services.reconcile.items import item as d1_item
from tracking.d1.clients import d1_client_create
from tracking.domain.d1_items import check_item
from tracking.domain.masking import pan_mask_item
from tracking.domain.validation import (
    CARD_ID_MAX,
    ID_PATTERN,
    OPERATION_ID_MAX,
    item_storable,
    parse_envelope,
)
from tracking.intake.ingest import item_fingerprint
from tracking.models import CardOrder, NotificationDelivery, OperationEvent, RefusalTally

pytestmark = pytest.mark.django_db

WEBHOOK = "/notifications/d1/v2/issuers/{issuer_id}/cards"
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@cache
def openapi():
    document = SchemaGenerator().get_schema(request=None, public=True)
    # NUL in a body is refused as a whole (test_hostile_input); here it would only crowd out
    # the bodies that reach the item checks.
    config = SchemathesisConfig.from_dict({"generation": {"allow-x00": False}})
    return schemathesis.openapi.from_dict(json.loads(json.dumps(document)), config=config)


@pytest.fixture
def wsgi_app():
    """The real WSGI stack, inside the test's transaction (as Django's test client does), its
    response closed once read, as a WSGI server closes it once sent (work queued for after the
    answer runs then)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    handler = WSGIHandler()

    def served(environ, start_response):
        response = handler(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            response.close()

    try:
        yield served
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def as_received(item):
    """`item` as the webhook reads it from the JSON text it was sent as."""
    return parse_envelope(json.dumps({"operations": [item]}).encode(), max_operations=1)[0]


def stored(issuer, item) -> OperationEvent | None:
    fingerprint = item_fingerprint(pan_mask_item(item_storable(as_received(item)).value))
    return OperationEvent.objects.filter(issuer=issuer, fingerprint=fingerprint).first()


def assert_nothing_accepted_was_lost(issuer, body, status: int) -> None:
    if status != 204:
        return
    for item in body["operations"]:
        event = stored(issuer, item)
        assert event is not None, item
        assert event.outcome != "invalid" or event.validation_error


# ---------------------------------------------------------------------------- schemathesis


def webhook_cases():
    operation = openapi()[WEBHOOK]["POST"]
    ours = {"issuer_id": spec.ISSUER_ID}
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=ours),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=ours),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )


@pytest.fixture
def d1_token(issuer) -> str:
    """A real token of the issuer's D1 client, so that generated bodies reach the item checks."""
    credentials = d1_client_create(issuer=issuer)
    pair = f"{credentials.client_id}:{credentials.client_secret}".encode()
    response = APIClient().post(
        "/authz/d1/v1/oauth2/token",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(pair).decode(),
    )
    return response.json()["access_token"]


def posts_recorded() -> int:
    """Deliveries kept, plus calls refused at the gate (counted per source and minute)."""
    tallied = RefusalTally.objects.aggregate(n=Sum("count"))["n"] or 0
    return NotificationDelivery.objects.count() + tallied


@FUZZ
@given(case=st.deferred(webhook_cases))
def test_webhook_never_answers_5xx_and_records_every_post(issuer, d1_token, wsgi_app, case):
    before = posts_recorded()

    response = case.call(app=wsgi_app, headers={"Authorization": f"Bearer {d1_token}"})

    case.validate_response(response, checks=[not_a_server_error])
    assert posts_recorded() == before + 1
    if response.status_code >= 400:
        assert set(response.json()) == {"errorCode", "error"}
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        assert_nothing_accepted_was_lost(issuer, body, response.status_code)


def read_api_cases():
    schema = openapi()
    return st.one_of(
        schema["/api/v1/orders/"]["GET"].as_strategy(GenerationMode.POSITIVE),
        schema["/api/v1/orders/"]["GET"].as_strategy(GenerationMode.NEGATIVE),
        schema["/api/v1/orders/{id}/"]["GET"].as_strategy(GenerationMode.POSITIVE),
    )


@pytest.fixture
def loaded(issuer, post_notification):
    for body in spec.ALL_IN_ORDER:
        post_notification(body)


@FUZZ
@given(case=st.deferred(read_api_cases))
def test_read_api_never_answers_5xx(loaded, staff_user, wsgi_app, case):
    token = read_api_token(staff_user)

    response = case.call(app=wsgi_app, headers={"Authorization": f"Token {token}"})

    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code in (200, 400, 404)


def token_cases():
    operation = openapi()["/authz/d1/v1/oauth2/token"]["POST"]
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )


@settings(FUZZ, max_examples=40)
@given(case=st.deferred(token_cases))
def test_token_endpoint_never_answers_5xx(db, wsgi_app, case):
    response = case.call(app=wsgi_app)

    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code in (400, 401, 415, 429)


# ---------------------------------------------------------------------------- hypothesis

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)
identifiers = st.from_regex(r"\A[A-Za-z0-9_-]{1,48}\Z")
times = st.sampled_from(
    [
        "2026-03-02T09:15:04.120Z",
        "2026-03-02T09:15:04+02:00",
        "2026-03-02",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2026-02-30T00:00:00Z",
        "yesterday",
    ]
)
statuses = st.sampled_from(["CARD_PROD_REQUESTED", "CARD_SHIPPED", "DATA_EXCEPTION", "CARD_X"])
texts = st.text(max_size=300) | st.sampled_from(["4111111111111111", "4111 1111 1111 1111"])


@st.composite
def items(draw):
    """Mostly D1-shaped items, each field sometimes missing, mistyped or out of bounds."""
    item = {
        "operationId": draw(identifiers | st.text(max_size=70)),
        "operation": draw(st.sampled_from(["PRODUCE", "STANDALONE_TRACKING", "UPDATE_ORDER"])),
        "status": draw(st.sampled_from(["PENDING", "SUCCESSFUL", "FAILED"]) | st.text()),
        "startTime": draw(times),
        "cardId": draw(identifiers | st.text(max_size=60)),
        "details": {
            "status": draw(statuses),
            "productionSite": draw(texts),
            "dueDate": draw(times),
            "shipment": {"trackingNumber": draw(texts), "status": draw(statuses | st.text())},
        },
        "issuerRequestId": draw(texts),
        "productionSite": draw(texts),
        "trackingType": draw(st.text(max_size=40)),
    }
    for name in draw(st.sets(st.sampled_from(sorted(item)), max_size=3)):
        replacement = draw(st.none() | json_values)
        if replacement is None:
            del item[name]
        else:
            item[name] = replacement
    return item


@settings(FUZZ, max_examples=300)
@given(item=items() | json_values)
def test_item_validator_never_raises_and_valid_items_fit_their_columns(item):
    check = check_item(item)

    assert isinstance(check.error, str)
    if check.is_valid:
        assert ID_PATTERN.fullmatch(check.card_id) and len(check.card_id) <= CARD_ID_MAX
        assert ID_PATTERN.fullmatch(check.operation_id)
        assert len(check.operation_id) <= OPERATION_ID_MAX
        assert len(item["status"]) <= 32


@FUZZ
@given(operations=st.lists(items() | json_values, min_size=1, max_size=4))
def test_every_item_of_an_accepted_body_is_stored(issuer, post_notification, operations):
    body = {"operations": operations}

    response = post_notification(body)

    assert response.status_code in (204, 400), response.content
    if response.status_code == 400 and response.json()["errorCode"] != "FIELD_INVALID_VALUE":
        return  # the body as a whole can never be valid (kept on its delivery)
    for item in operations:
        event = stored(issuer, item)
        assert event is not None, item
        storable = item_storable(as_received(item))
        check = check_item(pan_mask_item(storable.value), unstorable=storable.problem)
        assert (event.outcome == "invalid") == (not check.is_valid)


# Raw JSON values no column can hold as sent: each must cost only the item that carries it.
def _storable(text: str) -> bool:
    """Whether a database text column can hold `text` (no NUL, no unpaired surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


unstorable_values = st.one_of(
    st.sampled_from(
        [
            b"1e999",
            b"-1e999",
            b"NaN",
            b"Infinity",
            b"1" + b"0" * 5000,
            b'"\\u0000"',
            b'"\\ud800"',
            b'"\\udfff tail"',
            b'"raw \x00 nul"',
            b'"latin-1 caf\xe9"',
            b'{"a": ' * 40 + b"0" + b"}" * 40,
            b"[" * 20_000 + b"]" * 20_000,
        ]
    ),
    st.text(alphabet=st.sampled_from("ab\x00\ud800\udc00\ud83d"), min_size=1, max_size=8)
    # Only texts no column can hold: "a", or a surrogate pair that JSON reads as one character,
    # are ordinary values and would make a valid item.
    .filter(lambda text: not _storable(json.loads(json.dumps(text))))
    .map(lambda text: json.dumps(text).encode()),
)


@st.composite
def hostile_items(draw) -> bytes:
    """The raw JSON text of one D1-shaped item with an unstorable value in a field or a key."""
    base = d1_item("card-hostile", draw(statuses))
    where = draw(st.sampled_from(["top", "details", "shipment", "key"]))
    value = draw(unstorable_values)
    text = json.dumps(base).encode()
    if where == "key":
        return text[:-1] + b', "k\\u0000' + draw(st.sampled_from([b"", b"\\ud800"])) + b'": 1}'
    field = b'"extra": ' + value
    if where == "top":
        return text[:-1] + b", " + field + b"}"
    details = json.dumps(base["details"]).encode()
    if where == "details":
        return text.replace(details, details[:-1] + b", " + field + b"}")
    return text.replace(details, details[:-1] + b', "shipment": {"message": ' + value + b"}}")


@settings(FUZZ, max_examples=40)
@given(
    hostile=hostile_items(),
    valid_count=st.integers(min_value=1, max_value=8),
    position=st.integers(min_value=0, max_value=8),
)
def test_one_hostile_item_never_costs_the_valid_ones(
    issuer, post_notification, hostile, valid_count, position
):
    OperationEvent.objects.all().delete()
    CardOrder.objects.all().delete()
    valid = [
        json.dumps(d1_item(f"card-{n}", "CARD_PROD_REQUESTED")).encode() for n in range(valid_count)
    ]
    position = min(position, valid_count)
    texts = [*valid[:position], hostile, *valid[position:]]

    response = post_notification(b'{"operations": [' + b", ".join(texts) + b"]}")

    assert response.status_code == 204, response.content
    assert set(CardOrder.objects.values_list("card_id", flat=True)) == {
        f"card-{n}" for n in range(valid_count)
    }
    kept = OperationEvent.objects.get(card_id="card-hostile")
    assert kept.outcome == "invalid"
    assert kept.validation_error.startswith("stored escaped: ")
