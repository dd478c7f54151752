"""Staff read the carrier status's class in their words, the word as the carrier sent it beside."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.services.reconcile.items import item
from tracking.models import CardOrder

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser("lead", "lead@example.com", "lead-pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("word", "klass", "words_for_staff"),
    [
        ("InTransit_007", "in_transit", "In transit"),
        ("delivered", "delivered", "Delivered"),
        ("Exception_011", "returned", "Returned"),
        ("Colis en attente de tri", "unknown", "Not understood"),
    ],
)
def test_list_order_page_and_timeline_show_the_class_and_the_word(
    issuer, post_notification, staff, word, klass, words_for_staff
):
    payload = item("carrier-words", "CARD_SHIPPED", shipment_status=word)
    assert post_notification({"operations": [payload]}).status_code == 204
    order = CardOrder.objects.get(card_id="carrier-words")

    listing = staff.get("/admin/tracking/cardorder/").content.decode()
    page = staff.get(f"/admin/tracking/cardorder/{order.pk}/change/").content.decode()
    for html in (listing, page):
        badge = f'data-code="{word}" data-class="{klass}">'
        assert badge in html
        assert words_for_staff in html.split(badge, 1)[1][:800]
        assert f">{word}</code>" in html
    # The order page's headline and its timeline entry both carry it.
    assert page.count(f'data-code="{word}"') >= 2
