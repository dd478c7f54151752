"""Staff's words: one name per thing, empty lists that say what is empty, a fresh order that
says what it waits for, the same hold named the same everywhere, errors that stand out."""

from __future__ import annotations

import re

import pytest
from django.utils import translation

from tracking.domain import labels
from tracking.models import CardOrder
from tracking.services.audit import Actor
from tracking.services.registration import Registration, orders_register

pytestmark = pytest.mark.django_db

ORDERS = "/admin/tracking/cardorder/"
CALLS = "/admin/tracking/reconcileattempt/"


def text_of(response) -> str:
    html = re.sub(
        r"<script.*?</script>|<style.*?</style>", " ", response.content.decode(), flags=re.S
    )
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_calls_to_d1_have_one_name_in_the_sidebar_the_title_and_the_list(boss, orders):
    text = text_of(boss.get(CALLS))
    assert text.count("Calls to D1") >= 2  # the sidebar and the page's title
    assert "Reconcile attempts" not in text and "reconcile attempt" not in text.lower()


def test_an_empty_list_says_what_is_empty(boss, orders):
    text = text_of(boss.get(ORDERS, {"q": "no-such-card-anywhere"}))
    assert "No card orders here" in text
    assert "No card orders match the filters or the search of this list" in text
    assert "yielded" not in text
    with translation.override("ja"):
        japanese = text_of(
            boss.get(ORDERS, {"q": "no-such-card-anywhere"}, HTTP_ACCEPT_LANGUAGE="ja")
        )
    assert "該当するカード注文はありません" in japanese


def test_a_freshly_registered_order_says_it_waits_for_d1(boss, bo_issuer):
    orders_register(
        registrations=[Registration(issuer_id=bo_issuer.issuer_id, card_id="card-fresh-0001")],
        actor=Actor.of_command("tests"),
    )
    order = CardOrder.objects.get(card_id="card-fresh-0001")
    page = text_of(boss.get(f"{ORDERS}{order.pk}/change/"))
    assert "Waiting for D1's first message" in page
    for confusing in ("No known status", "(Unknown code", "older rules"):
        assert confusing not in page, page[
            max(0, page.find(confusing) - 300) : page.find(confusing) + 100
        ]
    listed = text_of(boss.get(ORDERS, {"q": "card-fresh-0001"}, follow=True))
    assert "Waiting for D1's first message" in listed


def test_the_same_hold_is_on_hold_in_every_list():
    with translation.override("en"):
        names = {
            labels.label("flag", "on_hold").text,
            labels.label("reconcile_reason", "unknown_status").text,
            labels.label("outcome", "unknown_status").text,
        }
    assert {str(name) for name in names} == {"On hold"}
    with translation.override("ja"):
        assert str(labels.label("reconcile_reason", "unknown_status").text) == "保留中"


def test_a_form_error_is_highlighted_at_its_field(boss):
    response = boss.post(
        "/admin/tracking/cardorder/register/",
        {"file": ""},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "bo-field bo-field--invalid" in html
    assert re.search(r'class="bo-error" role="alert"><span[^>]*>error</span>', html)


@pytest.mark.parametrize("language", ["en", "ja"])
def test_the_orders_list_reads_as_words_not_markup(boss, orders, language):
    """Every cell's words are text: no attribute spills onto the page in either language."""
    response = boss.get(ORDERS, HTTP_ACCEPT_LANGUAGE=language)
    rows = re.search(r'<table id="result_list".*?</table>', response.content.decode(), re.S)
    text = re.sub(r"<[^>]+>", " ", rows.group(0))
    assert '">' not in text and "&lt;" not in text
    operation_status = "Operation status" if language == "en" else "オペレーションの状態"
    assert re.search(rf'title="{operation_status}">[^<]+</span>', response.content.decode())


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_reason_to_ask_d1_has_words_in_both_languages(language):
    from tracking.domain.flags import ReconcileReason

    reasons = [
        value
        for name, value in vars(ReconcileReason).items()
        if name.isupper() and isinstance(value, str)
    ]
    with translation.override(language):
        found = {reason: labels.label("reconcile_reason", reason) for reason in reasons}
        words = {reason: str(label.text) for reason, label in found.items()}

    assert all(label.known for label in found.values()), words
    if language == "ja":
        assert words[ReconcileReason.SILENT] == "D1 からの通知なし"
        assert words[ReconcileReason.LOOK_UP] == "照会"


def test_the_carrier_words_queue_speaks_japanese(boss, orders):
    response = boss.get(ORDERS, {"queue": "carrier_word_unknown"}, HTTP_ACCEPT_LANGUAGE="ja")

    page = response.content.decode()
    assert response.status_code == 200
    assert "解釈できない配送ステータス" in page
    assert "Carrier word" not in page and "not understood" not in page
