"""Registration as hard as the webhook: every row gets its own outcome (registered, refused with
its field and reason, or a conflict with the stored order), whatever the body holds, and never a
500; the audit entry says who registered which cards and what was refused."""

from __future__ import annotations

import itertools
import json

import pytest
from django.contrib.auth.models import Permission
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from tests.conftest import make_staff
from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_token
from tracking.models import AuditEntry, CardOrder, RegistrationConflict

pytestmark = pytest.mark.django_db

URL = "/api/v1/orders/"
DEEP = 100_000


@pytest.fixture
def integration(db, issuer) -> APIClient:
    user = make_staff("integration", None)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["register_cardorder", "view_cardorder"])
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {read_api_token(user)}")
    return client


@pytest.fixture
def boss_client(db):
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    return client


def post_raw(client: APIClient, text: str):
    """The body exactly as written (json.dumps escapes lone surrogates as \\udXXX)."""
    return client.post(URL, data=text.encode(), content_type="application/json")


def row(card: str, **change) -> dict:
    base = {"issuer_id": spec.ISSUER_ID, "card_id": card, "operation_id": f"op-{card}"}
    return {k: v for k, v in {**base, **change}.items() if v is not None}


# ---------------------------------------------------------------------------- the fuzz

# (field, value, valid?) — what the attack run sent, and ordinary values beside them.
MUTATIONS = [
    ("issuer_request_id", "req-\x00-nul", False),
    ("input_file_name", "file\x00.csv", False),
    ("issuer_id", "ISSUER\x00001", False),
    ("card_id", "card\x00x", False),
    ("issuer_request_id", "a\ud800b", False),
    ("input_file_name", "\udfff", False),
    ("issuer_request_id", "r" * 256, False),
    ("input_file_name", "f" * 200_000, False),
    ("card_id", "c" * 49, False),
    ("operation_id", "o" * 65, False),
    ("issuer_id", "../../a?b=", False),
    ("issuer_id", "A#frag/../", False),
    ("issuer_id", "@evil.ex/", False),
    ("due_date", "9999-12-31", False),
    ("due_date", 20260305, False),
    ("due_date", "20260305", False),
    ("due_date", "2026-W10-4", False),
    ("due_date", "2026-02-30", False),
    ("due_date", "1999-12-31", False),
    ("due_date", ["2026-03-05"], False),
    ("issuer_request_id", {"a": [1, 2]}, False),
    ("card_id", 12345, False),
    ("issuer_request_id", "リクエスト-0001", True),
    ("input_file_name", "注文_20261204.csv", True),
    ("due_date", "2026-03-05", True),
    ("due_date", "2100-12-31", True),
    ("issuer_request_id", "", True),
    ("operation_id", None, True),
]

_cards = itertools.count()


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=12))
def test_fuzz_every_row_has_its_own_outcome_and_valid_rows_apply(integration, mutations):
    rows, expected_valid = [], []
    for name, value, valid in mutations:
        card = f"fuzz-{next(_cards)}"
        rows.append({**row(card), name: value} if value is not None else row(card))
        if value is None:
            rows[-1].pop(name, None)
        expected_valid.append(valid)

    answer = post_raw(integration, json.dumps(rows))

    assert answer.status_code in (200, 201, 400), answer.content[:300]
    body = answer.json()
    refused = {r["index"]: r["errors"] for r in body.get("refused", body.get("rows", []))}
    applied = {o["index"]: o for o in body.get("orders", [])}
    assert set(refused) | set(applied) == set(range(len(rows)))
    assert not set(refused) & set(applied)
    for index, valid in enumerate(expected_valid):
        if valid:
            assert index in applied, (mutations[index], refused.get(index))
            assert CardOrder.objects.filter(card_id=rows[index]["card_id"]).exists()
        else:
            name = mutations[index][0]
            assert name in refused[index], (mutations[index], refused.get(index))
            if name != "card_id":  # the row's own card is never registered
                assert not CardOrder.objects.filter(card_id=rows[index]["card_id"]).exists()
    if not any(expected_valid):
        assert answer.status_code == 400


def test_9999_valid_rows_and_one_nul_row_register_the_9999(integration):
    rows = [row(f"card-{i:06d}") for i in range(9_999)]
    rows.insert(5_000, row("card-nul", issuer_request_id="bad\x00"))

    answer = post_raw(integration, json.dumps(rows))

    assert answer.status_code == 201
    body = answer.json()
    assert body["created"] == 9_999
    assert body["refused"] == [
        {
            "index": 5_000,
            "errors": {"issuer_request_id": ["Holds a NUL character, which cannot be stored."]},
        }
    ]
    assert CardOrder.objects.count() == 9_999
    audit = AuditEntry.objects.get(action="orders.register")
    # A large batch is named by its count and digest, with what was refused.
    assert audit.details["rows"] == 9_999
    assert len(audit.details["rows_sha256"]) == 64
    assert audit.details["refused"] == 1
    assert audit.details["refused_rows"] == [{"index": 5_000, "fields": ["issuer_request_id"]}]
    assert audit.details["issuers"] == [spec.ISSUER_ID]


@pytest.mark.parametrize(
    "body",
    [
        "[" * DEEP + "]" * DEEP,
        "{" + '"a":{' * DEEP + "}" * DEEP + "}",
        '{"issuer_id":"ISSUERX001","card_id":' + "[" * DEEP + "]" * DEEP + "}",
    ],
    ids=["deep-list", "deep-object", "deep-field"],
)
def test_nesting_100000_levels_deep_is_400_with_a_reason(integration, body):
    answer = post_raw(integration, body)

    assert answer.status_code == 400
    assert answer.json()  # a reason, as JSON
    assert CardOrder.objects.count() == 0


def test_a_deeply_nested_row_costs_only_itself(integration):
    deep = "[" * DEEP + "]" * DEEP
    body = "[" + json.dumps(row("card-ok")) + ',{"issuer_id":"ISSUERX001","card_id":"card-deep",'
    body += '"issuer_request_id":' + deep + "}]"

    answer = post_raw(integration, body)

    assert answer.status_code == 201
    assert answer.json()["refused"][0]["index"] == 1
    assert "issuer_request_id" in answer.json()["refused"][0]["errors"]
    assert list(CardOrder.objects.values_list("card_id", flat=True)) == ["card-ok"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("issuer_request_id", "a\x00b"),
        ("input_file_name", "a\x00b"),
        ("issuer_id", "ISSUER\x00001"),
        ("issuer_request_id", "a\ud800b"),
        ("due_date", "9999-12-31"),
        ("due_date", 20260305),
        ("due_date", "2026-W10-4"),
    ],
)
def test_a_single_bad_registration_is_400_naming_the_field(integration, name, value):
    answer = post_raw(integration, json.dumps({**row("card-1"), name: value}))

    assert answer.status_code == 400
    assert name in answer.json()
    assert CardOrder.objects.count() == 0


# ---------------------------------------------------------------------------- conflicts


def test_a_single_conflicting_registration_is_409_and_kept_for_staff(integration, boss_client):
    first = row("card-1", issuer_request_id="req-A", due_date="2026-03-05")
    assert integration.post(URL, first, format="json").status_code == 201

    clash = integration.post(
        URL, {**first, "issuer_request_id": "req-B", "due_date": "2026-03-06"}, format="json"
    )

    assert clash.status_code == 409
    assert set(clash.json()["conflicts"]) == {"issuer_request_id", "due_date"}
    order = CardOrder.objects.get()
    assert (order.issuer_request_id, str(order.due_date)) == ("req-A", "2026-03-05")
    kept = RegistrationConflict.objects.get(field_name="issuer_request_id")
    assert (kept.order, kept.stored_value, kept.registered_value) == (order, "req-A", "req-B")
    assert (kept.username, kept.source) == ("integration", "API")
    # Staff see it: the list of conflicts, and the order's page.
    listing = boss_client.get("/admin/tracking/registrationconflict/").content.decode()
    assert "req-B" in listing and "card-1" in listing
    audit = AuditEntry.objects.filter(action="orders.register").latest("pk")
    assert audit.details["conflicts"] == 1
    assert audit.details["conflicting"] == [
        {"index": 0, "card_id": "card-1", "fields": ["due_date", "issuer_request_id"]}
    ]


def test_conflicts_in_a_batch_are_reported_per_row_and_the_rest_apply(integration):
    integration.post(URL, row("card-1", input_file_name="A.csv"), format="json")

    answer = integration.post(
        URL,
        [
            row("card-1", input_file_name="B.csv"),
            row("card-2", input_file_name="B.csv"),
            row("card-2", input_file_name="C.csv"),
        ],
        format="json",
    )

    assert answer.status_code == 201
    conflicts = {c["index"]: c["conflicts"] for c in answer.json()["conflicts"]}
    assert conflicts[0]["input_file_name"]["stored"] == "A.csv"
    assert conflicts[2]["input_file_name"] == {
        "stored": "B.csv",
        "registered": "C.csv",
        "reason": "differs from the stored value",
    }
    assert [o["index"] for o in answer.json()["orders"]] == [1]
    assert CardOrder.objects.get(card_id="card-1").input_file_name == "A.csv"
    assert CardOrder.objects.get(card_id="card-2").input_file_name == "B.csv"
    assert RegistrationConflict.objects.count() == 2


def test_the_audit_entry_names_issuer_cards_and_refusals(integration):
    integration.post(URL, [row("card-1"), {**row("card-2"), "card_id": "card 2"}], format="json")

    audit = AuditEntry.objects.get(action="orders.register")
    assert audit.details["issuers"] == [spec.ISSUER_ID]
    assert audit.details["cards"] == ["card-1/op-card-1"]
    assert audit.details["refused_rows"] == [{"index": 1, "fields": ["card_id"]}]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
FIELD_NAMES = st.sampled_from(
    ["issuer_id", "card_id", "operation_id", "issuer_request_id", "input_file_name", "due_date"]
)


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.fixed_dictionaries({"issuer_id": st.just(spec.ISSUER_ID)})
        | st.dictionaries(FIELD_NAMES | st.text(max_size=8), JSON_VALUES, max_size=7),
        min_size=1,
        max_size=8,
    ).map(lambda rows: [{**r, "card_id": r.get("card_id", "c-fuzz")} for r in rows])
)
def test_fuzz_any_json_rows_get_an_outcome_each_and_never_a_500(integration, rows):
    answer = post_raw(integration, json.dumps(rows))

    assert answer.status_code in (200, 201, 400), answer.content[:300]
    body = answer.json()
    refused = {r["index"] for r in body.get("refused", body.get("rows", []))}
    applied = {o["index"] for o in body.get("orders", [])}
    conflicts = {c["index"] for c in body.get("conflicts", [])}
    assert refused | applied | conflicts == set(range(len(rows)))
    assert len(refused) + len(applied) + len(conflicts) == len(rows)
    for index in applied:
        assert CardOrder.objects.filter(card_id=rows[index]["card_id"].strip()).exists()


def test_staff_find_a_card_s_conflicts_by_its_card_id(integration, boss_client):
    integration.post(URL, row("card-1", issuer_request_id="req-A"), format="json")
    integration.post(URL, row("card-1", issuer_request_id="req-B"), format="json")
    integration.post(URL, row("card-2", issuer_request_id="req-C"), format="json")
    integration.post(URL, row("card-2", issuer_request_id="req-D"), format="json")

    found = boss_client.get("/admin/tracking/registrationconflict/?q=card-2").content.decode()

    assert "req-D" in found and "req-B" not in found
