"""The order page: timeline lanes and markers, stage times, D1's error, and the operator actions."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.fixtures.backoffice import PATH, Card, post_items, shipment
from tracking.models import AuditEntry, CardOrder, OrderAcknowledgement, ReconcileAttempt

pytestmark = pytest.mark.django_db


def page_url(orders, name: str, action: str = "change") -> str:
    return f"/admin/tracking/cardorder/{orders[name]}/{action}/"


def lanes(html: str) -> list[str]:
    return re.findall(r'data-lane="(production|shipment)"', html)


def test_the_page_costs_a_bounded_number_of_queries(boss, orders, bo_issuer):
    with CaptureQueriesContext(connection) as small:
        assert boss.get(page_url(orders, "stale")).status_code == 200
    # Ten more carrier updates for the same order do not cost more queries.
    shipped = CardOrder.objects.get(pk=orders["stale"])
    news = Card(shipped.card_id, shipped.operation_id, shipped.input_file_name, "x")
    for n in range(10):
        shipment = {"carrier": "dhl", "trackingNumber": "JD01", "status": f"IN_TRANSIT_{n}"}
        post_items(bo_issuer, [news.item("CARD_SHIPPED", shipment=shipment)], shipped.updated_at)
    with CaptureQueriesContext(connection) as large:
        assert boss.get(page_url(orders, "stale")).status_code == 200
    # ...including the card's other orders and its pull & change results (two queries), and
    # the events sent to the issuer with their deliveries' counts (one), and D1's items waiting
    # to be folded (two counts)
    assert len(large) == len(small) <= 13, [q["sql"] for q in large.captured_queries]


def test_both_lanes_and_the_stale_marker(boss, orders):
    html = boss.get(page_url(orders, "stale")).content.decode()
    assert lanes(html).count("production") == 6  # five steps, READY late, and SHIPPED
    assert lanes(html).count("shipment") == 1
    stale_row = re.search(r'data-outcome="stale".*?</tr>', html, re.S).group(0)
    assert "CARD_PROD_READY" in stale_row
    assert "Stale · out of order" in stale_row
    assert "<summary>Raw JSON</summary>" in html
    assert "&quot;status&quot;: &quot;CARD_PROD_READY&quot;" in html


def test_later_carrier_updates_are_in_the_shipment_lane_only(boss, orders):
    html = boss.get(page_url(orders, "delivered")).content.decode()
    assert lanes(html).count("shipment") == 2
    assert "DELIVERED" in html and "FedEx" in html
    # the card's other operation (UPDATE_ORDER) is on the timeline too
    assert "UPDATE_ORDER" in html


def test_duplicates_show_how_many_times_an_item_came(boss, orders):
    html = boss.get(page_url(orders, "duplicate")).content.decode()
    assert "Received 3 times" in html


def test_d1_error_and_reason_are_prominent(boss, orders):
    html = boss.get(page_url(orders, "exception")).content.decode()
    alert = re.search(r'role="alert".*?</div>\s*</div>', html, re.S).group(0)
    assert "INVALID_CARD_DATA" in alert
    assert "Card data rejected by the personalization bureau" in alert
    assert "Embossing name exceeds 26 characters" in alert


def test_unknown_codes_and_conflicts_are_explained(boss, orders):
    assert "CARD_PROD_ON_HOLD" in boss.get(page_url(orders, "unknown")).content.decode()
    conflict = boss.get(page_url(orders, "conflict")).content.decode()
    assert "Conflict:" in conflict and 'data-outcome="conflict"' in conflict


def test_time_spent_in_each_stage(boss, orders):
    response = boss.get(page_url(orders, "shipped"))
    stages = [s.status for s in response.context["stages"]]
    assert stages[:3] == ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY"]
    assert str(response.context["stages"][1].duration) == "5:00:00"
    assert "Time in each stage" in response.content.decode()


def test_the_page_cannot_be_posted_to(boss, orders):
    assert boss.post(page_url(orders, "shipped"), {"production_status": "X"}).status_code == 403


# ---------------------------------------------------------------------------- replay


def test_replay_restores_the_state_from_the_events(admin_client_as, orders):
    operator = admin_client_as("tracking.view_cardorder", "tracking.replay_cardorder")
    CardOrder.objects.filter(pk=orders["shipped"]).update(production_status="DATA_PREPARED")
    response = operator.post(page_url(orders, "shipped", "replay"), follow=True)
    assert "changed: production_status" in response.content.decode()
    assert CardOrder.objects.get(pk=orders["shipped"]).production_status == "CARD_SHIPPED"
    again = operator.post(page_url(orders, "shipped", "replay"), follow=True)
    assert "the state is unchanged" in again.content.decode()


def test_replay_needs_its_permission_and_a_post(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    assert viewer.post(page_url(orders, "shipped", "replay")).status_code == 403
    operator = admin_client_as(
        "tracking.view_cardorder", "tracking.replay_cardorder", username="operator"
    )
    assert operator.get(page_url(orders, "shipped", "replay")).status_code == 405


# ---------------------------------------------------------------------------- acknowledge


def test_acknowledge_with_a_note(admin_client_as, orders):
    operator = admin_client_as("tracking.view_cardorder", "tracking.acknowledge_cardorder")
    response = operator.post(
        page_url(orders, "exception", "acknowledge"),
        {"note": "Customer re-ordered; name shortened."},
        follow=True,
    )
    assert "left the Exceptions list" in response.content.decode()
    ack = OrderAcknowledgement.objects.get(order_id=orders["exception"])
    assert ack.note == "Customer re-ordered; name shortened."
    assert ack.user.username == "clerk"
    assert "Customer re-ordered; name shortened." in response.content.decode()


def test_acknowledge_needs_a_note_and_the_permission(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    assert (
        viewer.post(page_url(orders, "exception", "acknowledge"), {"note": "x"}).status_code == 403
    )
    operator = admin_client_as(
        "tracking.view_cardorder", "tracking.acknowledge_cardorder", username="operator"
    )
    response = operator.post(
        page_url(orders, "exception", "acknowledge"), {"note": " "}, follow=True
    )
    assert "Write a note" in response.content.decode()
    assert not OrderAcknowledgement.objects.exists()


def test_actions_a_viewer_may_not_run_are_disabled(admin_client_as, orders):
    html = admin_client_as("tracking.view_cardorder").get(page_url(orders, "exception"))
    html = html.content.decode()
    assert re.search(r"<button[^>]*disabled[^>]*>\s*<span[^>]*>replay</span>", html)
    assert "You do not have permission to do this." in html


# ---------------------------------------------------------------------------- reconcile now


def tell_d1_the_gap_order_is_done(d1, orders, issuer) -> CardOrder:
    """D1's truth for the gap order: every step up to CARD_PROD_DONE (the portal saw ONGOING)."""
    order = CardOrder.objects.get(pk=orders["gap"])
    card = Card(order.card_id, order.operation_id, order.input_file_name, order.issuer_request_id)
    d1.truth_record(issuer_id=issuer.issuer_id, items=[card.item(step) for step in PATH])
    return order


def test_reconcile_now_asks_d1_and_the_page_shows_its_answer(
    admin_client_as, orders, bo_issuer, d1, django_capture_on_commit_callbacks
):
    order = tell_d1_the_gap_order_is_done(d1, orders, bo_issuer)
    operator = admin_client_as("tracking.view_cardorder", "tracking.reconcile_cardorder")

    # The task is queued when the request commits (run at once here, as tests run tasks eager).
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(page_url(orders, "gap", "reconcile"), follow=True)
    assert "its answer appears on this page" in response.content.decode()

    html = operator.get(page_url(orders, "gap")).content.decode()
    order.refresh_from_db()
    assert order.production_status == "CARD_PROD_DONE"
    attempt = ReconcileAttempt.objects.get(order=order)
    assert (attempt.trigger, attempt.requested_by.username) == ("staff", "clerk")
    assert 'data-source="on_demand"' in html  # D1's answer is on the timeline
    assert "Asked of D1" in html
    assert "Ask D1 now · clerk" in html  # and in the attempts
    assert "Corrected the order" in html
    # D1's answer itself, in words, on the attempt: production and operation status, HTTP.
    answer = re.search(r'data-attempt="\d+".*?</tr>', html, re.S).group(0)
    assert "Personalised" in answer and "CARD_PROD_DONE" in answer
    assert "Operation: Succeeded" in answer or "Operation: In progress" in answer
    assert "HTTP 200" in answer and " ms" in answer


def test_reconcile_now_needs_its_permission(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    assert viewer.post(page_url(orders, "gap", "reconcile")).status_code == 403
    html = viewer.get(page_url(orders, "gap")).content.decode()
    assert re.search(r"<button[^>]*disabled[^>]*>\s*<span[^>]*>sync</span>Ask D1 now", html)


def test_reconcile_now_from_the_list_queues_the_selected_orders(
    boss, orders, bo_issuer, d1, django_capture_on_commit_callbacks
):
    tell_d1_the_gap_order_is_done(d1, orders, bo_issuer)
    with django_capture_on_commit_callbacks(execute=True):
        response = boss.post(
            "/admin/tracking/cardorder/",
            {"action": "reconcile_now_action", "_selected_action": [orders["gap"]]},
            follow=True,
        )
    assert "Asked D1 about 1 order(s)" in response.content.decode()
    assert ReconcileAttempt.objects.filter(order_id=orders["gap"], outcome="changed").exists()


def test_a_viewer_is_not_offered_reconcile_now_in_the_list(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    assert "reconcile_now_action" not in viewer.get("/admin/tracking/cardorder/").content.decode()
    viewer.post(
        "/admin/tracking/cardorder/",
        {"action": "reconcile_now_action", "_selected_action": [orders["gap"]]},
    )
    assert not ReconcileAttempt.objects.exists()


# ---------------------------------------------------------------------------- trust boundary


def test_operator_actions_are_audited(admin_client_as, orders, bo_issuer, d1):
    operator = admin_client_as(
        "tracking.view_cardorder",
        "tracking.reconcile_cardorder",
        "tracking.replay_cardorder",
        "tracking.acknowledge_cardorder",
    )
    tell_d1_the_gap_order_is_done(d1, orders, bo_issuer)
    operator.post(page_url(orders, "gap", "reconcile"))
    operator.post(page_url(orders, "shipped", "replay"))
    operator.post(page_url(orders, "exception", "acknowledge"), {"note": "handled"})

    entries = {
        (e.action, e.target_id, e.username)
        for e in AuditEntry.objects.filter(action__startswith="order.")
    }
    assert entries == {
        ("order.reconcile", str(orders["gap"]), "clerk"),
        ("order.replay", str(orders["shipped"]), "clerk"),
        ("order.acknowledge", str(orders["exception"]), "clerk"),
    }


def test_viewers_see_the_page_with_personal_fields_masked(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    html = viewer.get(page_url(orders, "delivered")).content.decode()
    assert "7946 1234 5678" not in html  # the tracking number
    assert "fedex.com" not in html  # nor its link
    assert "Delivered to the front door" not in html  # nor the carrier's message
    assert "<summary>Raw JSON</summary>" not in html
    assert "•••••• (hidden)" in html
    assert "FedEx" in html and "DELIVERED" in html  # what is not personal stays

    operator = admin_client_as(
        "tracking.view_cardorder", "tracking.view_personal_fields", username="operator"
    )
    html = operator.get(page_url(orders, "delivered")).content.decode()
    assert "7946 1234 5678" in html and "<summary>Raw JSON</summary>" in html


def test_the_carriers_updates_are_a_timeline_with_d1s_times(boss, orders):
    html = boss.get(page_url(orders, "shipped")).content.decode()
    timeline = html[html.index('id="carrier-timeline"') :]
    timeline = timeline[: timeline.index("</section>")]
    assert re.findall(r'bo-carrier-update" data-status="([A-Z_]+)"', timeline) == [
        "PICKED_UP",
        "IN_TRANSIT",
    ]
    assert "Departed facility" in timeline
    assert timeline.count('data-field="d1-time"') == 2
    assert timeline.count(" UTC") >= 4  # D1's time and the receipt, each with its zone


def test_viewers_see_the_carrier_timeline_without_messages(admin_client_as, orders):
    viewer = admin_client_as("tracking.view_cardorder")
    html = viewer.get(page_url(orders, "shipped")).content.decode()
    timeline = html[html.index('id="carrier-timeline"') :]
    assert "Departed facility" not in timeline[: timeline.index("</section>")]


def test_the_expected_delivery_sent_by_d1_is_shown(boss, orders, bo_issuer):
    order = CardOrder.objects.get(pk=orders["shipped"])
    card = Card(order.card_id, order.operation_id, order.input_file_name, order.issuer_request_id)
    parcel = shipment("1Z999AA10123456784", expectedDeliveryDate="2026-12-24")
    latest = card.item("CARD_SHIPPED", op_status="SUCCESSFUL", shipment=parcel)
    latest["endTime"] = "2026-11-25T00:00:00.000Z"  # D1's latest word on the order
    post_items(bo_issuer, [latest], order.updated_at)
    html = boss.get(page_url(orders, "shipped")).content.decode()
    assert 'id="expected-delivery" data-source="d1" data-expected="2026-12-24"' in html


def test_items_waiting_to_be_applied_are_said_until_the_projector_folds_them(
    boss, bo_issuer, settings
):
    from tracking.intake.projector import fold_pending

    # The webhook only stores; the projector is not woken here (its wake-up waits for a commit).
    settings.INGEST_FOLD = "celery"
    card = Card("card-waiting-1", "op-waiting-1", "BATCH_20261120_EU_0001.csv", "req-waiting-1")
    now = timezone.now()
    post_items(bo_issuer, [card.item("CARD_PROD_REQUESTED"), card.item("DATA_PREPARED")], now)
    order = CardOrder.objects.get(card_id="card-waiting-1")
    url = f"/admin/tracking/cardorder/{order.pk}/change/"

    def notice(**headers) -> str:
        html = boss.get(url, **headers).content.decode()
        found = re.search(r'id="events-waiting">.*?<p>(.*?)</p>', html, re.S)
        return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).strip() if found else ""

    assert notice() == (
        "2 items from D1 are waiting to be applied. "
        "This page shows the order without them until then."
    )
    # D1 sends one of them again: the copy waits to be counted too.
    post_items(bo_issuer, [card.item("DATA_PREPARED")], now + dt.timedelta(seconds=5))
    assert notice().startswith("3 items from D1 are waiting to be applied.")
    assert notice(HTTP_ACCEPT_LANGUAGE="ja").startswith("D1から届いた 3 件がまだ反映待ちです。")

    fold_pending()
    assert notice() == notice(HTTP_ACCEPT_LANGUAGE="ja") == ""
    html = boss.get(url).content.decode()
    assert "DATA_PREPARED" in html and "Received 2 times" in html


def test_one_item_waiting_is_said_in_the_singular(boss, bo_issuer, orders, settings):
    settings.INGEST_FOLD = "celery"
    order = CardOrder.objects.get(pk=orders["stale"])
    assert "events-waiting" not in boss.get(page_url(orders, "stale")).content.decode()
    card = Card(order.card_id, order.operation_id, order.input_file_name, "x")
    post_items(bo_issuer, [card.item("CARD_PROD_DONE")], timezone.now())
    html = boss.get(page_url(orders, "stale")).content.decode()
    assert "1 item from D1 is waiting to be applied." in html
