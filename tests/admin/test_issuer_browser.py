"""The issuer's side in a real browser (Debian's chromium): register an order file with its preview
and refused rows, look a card up at the D1 sandbox, follow a re-ordered card to its newer order."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from playwright.sync_api import expect

from tests.admin.test_browser import WIDTH
from tests.fixtures.browser import needs_chromium
from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.conftest import d1, sandbox  # noqa: F401 (fixtures)
from tests.services.reconcile.items import item
from tracking.intake.ingest import ingest_operations
from tracking.models import AuditEntry, CardOrder, Issuer, NotificationDelivery

PASSWORD = "issuer-side-password-1"

pytestmark = [
    needs_chromium,
    pytest.mark.django_db(transaction=True),
]

ORDER_FILE = (
    "card_id,operation_id,issuer_request_id,input_file_name,due_date\n"
    "card-file-0001,op-file-0001,row-0001,ORDERS_20261130_01.csv,2026-12-04\n"
    "card-file-0002,,row-0002,ORDERS_20261130_01.csv,2026-12-04\n"
    "card with spaces,op-file-0003,row-0003,ORDERS_20261130_01.csv,2026-12-04\n"
    "card-file-0004,op-file-0004,row-0004,ORDERS_20261130_01.csv,the fourth\n"
    "card-file-0005,op-file-0005,row-0005,ORDERS_20261130_01.csv,\n"
)


@pytest.fixture
def page(chromium, live_server, issuer):
    """A logged-in operator-level session on the live server, at 1280 px wide."""
    get_user_model().objects.create_superuser("issuer-boss", "boss@example.com", PASSWORD)
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": 900}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("issuer-boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def test_an_order_file_is_previewed_with_its_refused_rows_then_registered(page):
    page.goto("/admin/tracking/cardorder/")
    page.get_by_role("link", name="Register orders").first.click()
    page.get_by_label("Order file (CSV)").set_input_files(
        files=[{"name": "orders.csv", "mimeType": "text/csv", "buffer": ORDER_FILE.encode()}]
    )
    page.get_by_label("Issuer of rows without issuer_id").select_option(ISSUER_ID)
    page.get_by_role("button", name="Preview").click()

    expect(
        page.get_by_role("heading", name="Preview: 3 orders to register, 2 refused rows")
    ).to_be_visible()
    refused = page.locator("#refused-rows tbody tr")
    expect(refused).to_have_count(2)
    expect(refused.nth(0)).to_contain_text("4")  # line 4 of the file
    expect(refused.nth(0)).to_contain_text("card_id")
    expect(refused.nth(1)).to_contain_text("5")
    expect(refused.nth(1)).to_contain_text("due_date")
    expect(page.locator("#valid-rows tbody tr")).to_have_count(3)
    assert not CardOrder.objects.exists()  # nothing before the confirmation

    page.get_by_role("button", name="Register 3 orders").click()

    expect(page.get_by_text("Registered 3 orders from orders.csv: 3 new")).to_be_visible()
    expect(page.get_by_text("2 refused rows were left out")).to_be_visible()
    assert set(CardOrder.objects.values_list("card_id", flat=True)) == {
        "card-file-0001",
        "card-file-0002",
        "card-file-0005",
    }
    # The list says plainly that D1 has not spoken about them yet.
    expect(page.get_by_text("Waiting for D1's first message").first).to_be_visible()
    audit = AuditEntry.objects.get(action="orders.register")
    assert (audit.details["created"], audit.details["refused"]) == (3, 2)


def test_a_file_with_an_unknown_column_is_read_and_says_it_ignored_it(page):
    page.goto("/admin/tracking/cardorder/register/")
    page.get_by_label("Order file (CSV)").set_input_files(
        files=[
            {
                "name": "x.csv",
                "mimeType": "text/csv",
                "buffer": f"card_id,issuer_id,colour\nc-1,{ISSUER_ID},blue\n".encode(),
            }
        ]
    )
    page.get_by_role("button", name="Preview").click()

    expect(page.get_by_text("Column(s) ignored: colour.")).to_be_visible()
    expect(page.locator("#valid-rows tbody tr")).to_have_count(1)
    assert not CardOrder.objects.exists()


def test_looking_up_an_unknown_card_at_the_sandbox_opens_its_new_order(page, d1):  # noqa: F811
    d1.truth_record(
        issuer_id=ISSUER_ID,
        items=[
            item("card-lookup-1", "CARD_PROD_REQUESTED"),
            item("card-lookup-1", "DATA_PREPARED"),
        ],
    )
    page.goto("/admin/tracking/cardorder/")
    page.get_by_role("link", name="Look up at D1").first.click()
    page.get_by_label("Issuer").select_option(ISSUER_ID)
    page.get_by_label("Card id (D1 cardId)").fill("card-lookup-1")
    page.get_by_role("button", name="Look up at D1").click()

    order = CardOrder.objects.get(card_id="card-lookup-1")
    page.wait_for_url(f"**/admin/tracking/cardorder/{order.pk}/change/")
    expect(page.get_by_text("D1 answered 200 for card card-lookup-1")).to_be_visible()
    expect(page.get_by_text("new order created")).to_be_visible()
    expect(page.get_by_role("region", name="Where this card is")).to_contain_text(
        "op-card-lookup-1"
    )
    assert order.production_status == "DATA_PREPARED"
    assert AuditEntry.objects.filter(action="order.look_up", target_id=str(order.pk)).exists()

    # A card D1 has never heard of: said plainly, and nothing is created.
    page.goto("/admin/tracking/cardorder/look-up/")
    page.get_by_label("Card id (D1 cardId)").fill("card-nobody-has")
    page.get_by_role("button", name="Look up at D1").click()
    expect(page.get_by_text("D1 does not know card card-nobody-has")).to_be_visible()
    assert not CardOrder.objects.filter(card_id="card-nobody-has").exists()


def test_a_reordered_card_leads_from_the_superseded_order_to_the_newer_one(page, d1):  # noqa: F811
    old_steps = [item("card-again", "CARD_PROD_REQUESTED"), item("card-again", "DATA_PREPARED")]
    newer = item("card-again", "CARD_PROD_READY") | {
        "operationId": "op-card-again-2",
        "startTime": "2026-03-09T10:00:00.000Z",
    }
    d1.truth_record(issuer_id=ISSUER_ID, items=[*old_steps, newer])
    page.goto("/admin/tracking/cardorder/look-up/")
    page.get_by_label("Card id (D1 cardId)").fill("card-again")
    page.get_by_role("button", name="Look up at D1").click()  # D1 answers the newest operation
    # The older operation, as webhooks told it before.
    issuer = Issuer.objects.get(issuer_id=ISSUER_ID)
    with transaction.atomic():  # as the webhook does: ingest runs inside a transaction
        delivery = NotificationDelivery.objects.create(issuer=issuer, status_code=204)
        ingest_operations(issuer=issuer, operations=old_steps, delivery=delivery)
    old = CardOrder.objects.get(operation_id="op-card-again")

    page.goto(f"/admin/tracking/cardorder/{old.pk}/change/")
    expect(page.get_by_text("the same card was ordered again")).to_be_visible()
    page.get_by_role("link", name="Open the newer order").click()

    expect(page.get_by_role("region", name="Where this card is")).to_contain_text("op-card-again-2")
    expect(page.get_by_text("Older: superseded by this order")).to_be_visible()
    page.goto("/admin/tracking/cardorder/?queue=superseded")
    expect(page.get_by_text("op-card-again", exact=True)).to_be_visible()
