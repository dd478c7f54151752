"""The D1 message page: the body as received, masked for viewers, and the orders it touched."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.backoffice import Card, post_items
from tracking.domain.masking import PERSONAL_MASK
from tracking.models import CardOrder, NotificationDelivery

pytestmark = pytest.mark.django_db


def message_with(text: str) -> NotificationDelivery:
    return NotificationDelivery.objects.filter(body__contains=text).latest("pk")


def page(client, delivery: NotificationDelivery) -> str:
    response = client.get(f"/admin/tracking/notificationdelivery/{delivery.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_an_accepted_message_shows_its_body_and_links_its_orders(boss, orders):
    delivery = message_with("1Z999AA10123456784")
    assert delivery.status_code == 204
    html = page(boss, delivery)
    assert 'id="delivery-body"' in html
    assert "1Z999AA10123456784" in html
    order = CardOrder.objects.get(pk=orders["shipped"])
    assert f'href="/admin/tracking/cardorder/{order.pk}/change/" data-order="{order.pk}"' in html


def test_a_repeated_item_still_links_its_order(boss, orders, bo_issuer):
    order = CardOrder.objects.get(pk=orders["shipped"])
    first = message_with("1Z999AA10123456784")
    again = json.loads(first.body)["operations"]
    post_items(bo_issuer, again, order.updated_at)
    repeat = NotificationDelivery.objects.latest("pk")
    assert repeat.new_count == 0 and repeat.duplicate_count == len(again)
    assert f'data-order="{order.pk}"' in page(boss, repeat)


def test_one_message_about_several_cards_links_each(boss, orders, bo_issuer):
    cards = [Card(f"card-9000{n}", f"op-9000{n}", "BATCH_MULTI.csv", f"req-{n}") for n in (1, 2)]
    post_items(bo_issuer, [c.item("CARD_PROD_REQUESTED") for c in cards], orders_time(orders))
    html = page(boss, NotificationDelivery.objects.latest("pk"))
    for card in cards:
        order = CardOrder.objects.get(card_id=card.card_id)
        assert f'data-order="{order.pk}">{card.card_id}</a>' in html


def orders_time(orders):
    return CardOrder.objects.get(pk=orders["shipped"]).updated_at


def test_viewers_read_the_body_without_the_personal_parts(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_notificationdelivery")
    delivery = message_with("1Z999AA10123456784")
    html = page(viewer, delivery)
    assert 'id="delivery-body"' in html
    assert "1Z999AA10123456784" not in html
    assert f'"shipment": "{PERSONAL_MASK}"' in html.replace("&quot;", '"')
    # Identifiers stay whole: they are how staff find the order.
    assert "card-000123" in html and "op-0123a7c9e2b41f" in html
