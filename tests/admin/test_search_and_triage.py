"""The search callers need (a tracking number's end, parts of ids) and triage that holds still."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from tests.admin.test_orders_list import listed_cards
from tracking.models import AuditEntry, CardOrder, OrderAcknowledgement

pytestmark = pytest.mark.django_db

LIST = "/admin/tracking/cardorder/"


def search_path(response) -> str:
    found = re.search(
        r'id="search-matched" data-search-path="([a-z_]+)"', response.content.decode()
    )
    return found.group(1) if found else ""


# ---------------------------------------------------------------------------- search


def test_the_last_four_characters_of_a_tracking_number_find_the_card(boss, orders):
    response = boss.get(LIST, {"q": "6784"})  # 1Z999AA10123456784, read out by a caller
    assert listed_cards(response) == {"card-000123"}
    assert search_path(response) == "tracking_end"
    assert "1 card order" in response.content.decode()


def test_the_end_of_a_tracking_number_ignores_case(boss, orders):
    response = boss.get(LIST, {"q": "aa10123456784"})
    assert listed_cards(response) == {"card-000123"}


def test_three_characters_are_not_a_tracking_number_end(boss, orders):
    response = boss.get(LIST, {"q": "784"})
    assert search_path(response) != "tracking_end"


def test_viewers_cannot_search_by_tracking_number(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    response = viewer.get(LIST, {"q": "6784"})
    assert "card-000123" not in listed_cards(response)
    assert search_path(response) != "tracking_end"


def test_part_of_a_card_id_finds_it_without_an_extra_click(boss, orders):
    response = boss.get(LIST, {"q": "00012"})
    assert "card-000123" in listed_cards(response)
    assert search_path(response) == "card_id_part"


def test_part_of_a_request_id_finds_it(boss, orders):
    response = boss.get(LIST, {"q": "11-0124"})
    assert listed_cards(response) == {"card-000124"}
    assert search_path(response) == "request_id_part"


def test_an_exact_id_still_opens_the_order(boss, orders):
    response = boss.get(LIST, {"q": "CARD-000123"})
    assert response.status_code == 302
    assert response["Location"].endswith(f"/{orders['shipped']}/change/")


# ---------------------------------------------------------------------------- triage


def exception_rows(client) -> list[str]:
    html = client.get(LIST, {"queue": "exceptions"}).content.decode()
    return re.findall(r'bo-id" href="[^"]+" title="[^"]*">(card-\d+)</a>', html)


def test_exceptions_hold_still_in_the_order_they_were_flagged(boss, orders):
    before = exception_rows(boss)
    assert len(before) >= 2
    # News on the last row (a carrier update, a refresh: updated_at) does not move it up.
    last = CardOrder.objects.get(card_id=before[-1])
    CardOrder.objects.filter(pk=last.pk).update(updated_at=last.updated_at.replace(year=2030))
    assert exception_rows(boss) == before
    flagged = [
        CardOrder.objects.get(card_id=card).exception_changed_at
        for card in before
        if CardOrder.objects.get(card_id=card).exception_changed_at
    ]
    assert flagged == sorted(flagged)


def test_two_exceptions_are_acknowledged_with_one_note(boss, orders):
    chosen = [orders["exception"], orders["conflict"]]
    post = {"action": "acknowledge_action", ACTION_CHECKBOX_NAME: chosen}
    form = boss.post(f"{LIST}?queue=exceptions", post)
    assert form.status_code == 200
    assert 'id="acknowledge-bulk-form"' in form.content.decode()
    assert not OrderAcknowledgement.objects.exists()  # nothing happens before the note

    empty = boss.post(f"{LIST}?queue=exceptions", {**post, "apply": "1", "note": "  "})
    assert empty.status_code == 200 and 'class="bo-error"' in empty.content.decode()
    assert not OrderAcknowledgement.objects.exists()

    done = boss.post(
        f"{LIST}?queue=exceptions",
        {**post, "apply": "1", "note": "Reissued, card 4111111111111111"},
    )
    assert done.status_code == 302
    notes = OrderAcknowledgement.objects.filter(order__in=chosen)
    assert sorted(notes.values_list("order_id", flat=True)) == sorted(chosen)
    assert {n.note for n in notes} == {"Reissued, card ************1111"}
    assert AuditEntry.objects.filter(action="order.acknowledge").count() == 2
    assert not {"card-000999", "card-000778"} & set(exception_rows(boss))

    acknowledged = boss.get(LIST, {"queue": "acknowledged"}).content.decode()
    assert acknowledged.count('class="bo-subtle block bo-acknowledged-by"') == 2
    assert "boss" in acknowledged


def test_take_it_assigns_the_order_and_the_list_filters_by_it(boss, orders, superuser):
    post = {"action": "take_action", ACTION_CHECKBOX_NAME: [orders["exception"]]}
    assert boss.post(f"{LIST}?queue=exceptions", post).status_code == 302
    assert CardOrder.objects.get(pk=orders["exception"]).assignee == superuser
    assert AuditEntry.objects.filter(action="order.assign").count() == 1

    assert listed_cards(boss.get(LIST, {"assignee": "me"})) == {"card-000999"}
    assert "card-000999" not in listed_cards(boss.get(LIST, {"assignee": "nobody"}))
    html = boss.get(LIST, {"queue": "exceptions"}).content.decode()
    assert 'data-assignee="boss"' in html


def test_take_it_on_the_order_page_then_release(boss, orders, superuser):
    take = f"{LIST}{orders['exception']}/take/"
    assert boss.post(take).status_code == 302
    page = boss.get(f"{LIST}{orders['exception']}/change/").content.decode()
    assert 'id="taken-by" data-assignee="boss"' in page
    assert boss.post(take, {"release": "1"}).status_code == 302
    assert CardOrder.objects.get(pk=orders["exception"]).assignee is None


def test_viewers_cannot_take_or_acknowledge(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    assert viewer.post(f"{LIST}{orders['exception']}/take/").status_code == 403
    post = {"action": "acknowledge_action", ACTION_CHECKBOX_NAME: [orders["exception"]]}
    viewer.post(f"{LIST}?queue=exceptions", {**post, "apply": "1", "note": "x"})
    assert not OrderAcknowledgement.objects.exists()
    assert CardOrder.objects.get(pk=orders["exception"]).assignee is None


@pytest.mark.parametrize(
    "params",
    [
        {"q": "%"},
        {"q": "_"},
        {"q": "'\""},
        {"q": "x" * 5000},
        {"q": "\uff11\uff12\uff13\uff14"},  # full-width digits
        {"assignee": "abc"},
        {"assignee": "99999999999999999999"},
        {"queue": "acknowledged", "q": "%%%%"},
    ],
)
@pytest.mark.parametrize("path", ["", "export.xlsx", "export.csv"])
def test_odd_searches_and_filters_answer_without_an_error(boss, orders, params, path):
    response = boss.get(LIST + path, params)
    if response.streaming:
        b"".join(response.streaming_content)
    assert response.status_code == 200


def test_an_assignee_that_is_no_user_lists_nothing(boss, orders):
    assert listed_cards(boss.get(LIST, {"assignee": "99999999999999999999"})) == set()
