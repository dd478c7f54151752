"""Staff access: roles as groups, the read API's permissions, read-only evidence, masked fields."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_client
from tracking.domain.masking import PERSONAL_MASK
from tracking.models import AuditEntry, CardOrder, NotificationDelivery, OperationEvent
from tracking.services import roles

pytestmark = pytest.mark.django_db


@pytest.fixture
def loaded(issuer, post_notification):
    for body in spec.ALL_IN_ORDER:
        post_notification(body)


def api_as(user) -> APIClient:
    return read_api_client(user)


def perms(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
    }


# ---------------------------------------------------------------------------- roles


def test_setup_roles_is_idempotent_and_repairs_drift(db):
    call_command("setup_roles", stdout=None)
    viewers = Group.objects.get(name=roles.VIEWERS)
    before = perms(roles.VIEWERS)
    viewers.permissions.clear()

    call_command("setup_roles")
    call_command("setup_roles")

    assert perms(roles.VIEWERS) == before
    assert Group.objects.filter(name__in=[roles.VIEWERS]).count() == 1


def test_each_role_holds_what_it_needs_and_no_more(db):
    viewers, operators, administrators = (
        perms(roles.VIEWERS),
        perms(roles.OPERATORS),
        perms(roles.ADMINISTRATORS),
    )

    assert {"tracking.view_cardorder", "tracking.view_operationevent"} <= viewers
    assert all(p.startswith("tracking.view_") for p in viewers)
    assert "tracking.view_personal_fields" not in viewers
    assert "tracking.view_auditentry" not in viewers
    assert operators - viewers == {
        "tracking.reconcile_cardorder",
        "tracking.replay_cardorder",
        "tracking.acknowledge_cardorder",
        "tracking.view_personal_fields",
        "tracking.register_cardorder",
    }
    assert "tracking.register_cardorder" not in viewers
    assert {"tracking.change_issuer", "tracking.add_d1client", "auth.change_user"} <= administrators
    assert viewers < operators < administrators
    for group in (viewers, operators, administrators):
        for model in ("operationevent", "notificationdelivery", "auditentry", "cardorder"):
            for verb in ("add", "change", "delete"):
                assert f"tracking.{verb}_{model}" not in group


# ---------------------------------------------------------------------------- read API


def test_anonymous_and_role_less_users_cannot_read(loaded):
    assert APIClient().get("/api/v1/orders/").status_code in (401, 403)
    nobody = get_user_model().objects.create_user("nobody", password="pw-nobody-1234")
    assert api_as(nobody).get("/api/v1/orders/").status_code == 403
    staff_without_role = get_user_model().objects.create_user(
        "bare-staff", password="pw-bare-1234", is_staff=True
    )
    assert api_as(staff_without_role).get("/api/v1/orders/").status_code == 403
    assert APIClient().get("/api/schema/").status_code in (401, 403)


def test_viewers_read_with_personal_fields_masked(loaded, viewer_user):
    client = api_as(viewer_user)

    order = client.get("/api/v1/orders/", {"card_id": "card-000123"}).json()["results"][0]
    detail = client.get(f"/api/v1/orders/{order['id']}/").json()

    assert order["shipment"]["tracking_number"] == PERSONAL_MASK
    assert order["shipment"]["status"] == "DELIVERED"  # not personal
    assert order["production_status"] == "CARD_SHIPPED"
    assert {e["payload"] for e in detail["events"]} == {PERSONAL_MASK}
    assert "1Z999AA10123456784" not in str(detail)


def test_operators_read_personal_fields(loaded, staff_user):
    order = api_as(staff_user).get("/api/v1/orders/", {"card_id": "card-000123"}).json()
    assert order["results"][0]["shipment"]["tracking_number"] == "1Z999AA10123456784"


def test_the_read_api_has_no_way_to_write(loaded, administrator_user):
    superuser = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    order_id = CardOrder.objects.first().pk

    for user, refused in ((administrator_user, 403), (superuser, 405)):
        client = api_as(user)
        # POST registers orders (tests/services/test_registration.py); an empty one is refused.
        assert client.post("/api/v1/orders/", {}, format="json").status_code == 400
        assert client.put(f"/api/v1/orders/{order_id}/", {}).status_code == refused
        assert client.delete(f"/api/v1/orders/{order_id}/").status_code == refused


# ---------------------------------------------------------------------------- admin


@pytest.mark.parametrize("model", [OperationEvent, NotificationDelivery, AuditEntry])
def test_evidence_is_read_only_in_the_admin_even_for_superusers(loaded, model, rf):
    superuser = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    request = rf.get("/")
    request.user = superuser
    model_admin = admin.site._registry[model]

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, model.objects.first())
    assert not model_admin.has_delete_permission(request, model.objects.first())


def test_audit_entries_refuse_changes_at_the_model_too(loaded, staff_user):
    entry = AuditEntry.objects.create(action="test", username="x")

    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        AuditEntry.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEntry.objects.update(action="other")


ORDERS = "/admin/tracking/cardorder/"


def test_viewers_see_masked_fields_and_no_actions(loaded, client, viewer_user):
    client.force_login(viewer_user)
    order = CardOrder.objects.exclude(tracking_number="").first()

    changelist = client.get(ORDERS)
    page = client.get(f"{ORDERS}{order.pk}/change/")

    assert changelist.status_code == page.status_code == 200
    for response in (changelist, page):
        html = response.content.decode()
        assert order.tracking_number not in html
        assert PERSONAL_MASK in html
    assert "reconcile_now_action" not in changelist.content.decode()


def test_operators_see_personal_fields_and_their_actions_are_audited(loaded, client, staff_user):
    client.force_login(staff_user)
    orders = list(CardOrder.objects.all()[:2])
    shipped = CardOrder.objects.exclude(tracking_number="").first()

    changelist = client.get(ORDERS)
    assert shipped.tracking_number in changelist.content.decode()
    assert "reconcile_now_action" in changelist.content.decode()
    response = client.post(
        ORDERS,
        {"action": "reconcile_now_action", "_selected_action": [o.pk for o in orders]},
        REMOTE_ADDR="198.51.100.23",
    )

    assert response.status_code == 302
    # One job for the selection, one entry naming its orders.
    entry = AuditEntry.objects.get(action="orders.reconcile_bulk")
    assert sorted(entry.details["orders"]) == sorted(o.pk for o in orders)
    assert (entry.username, entry.ip_address, entry.target_type) == (
        "staff",
        "198.51.100.23",
        "tracking.d1askjob",
    )


def test_a_viewer_forcing_an_action_is_refused(loaded, client, viewer_user):
    client.force_login(viewer_user)
    order = CardOrder.objects.first()

    response = client.post(
        ORDERS, {"action": "reconcile_now_action", "_selected_action": [order.pk]}
    )

    assert response.status_code in (200, 302, 403)  # Django does not offer it: nothing runs
    assert not AuditEntry.objects.filter(
        action__in=["order.reconcile", "orders.reconcile_bulk"]
    ).exists()


def test_the_action_itself_checks_the_permission(loaded, viewer_user, rf):
    from tracking.admin.reconcile import reconcile_now_action

    request = rf.post("/")
    request.user = viewer_user
    order_admin = admin.site._registry[CardOrder]

    with pytest.raises(PermissionDenied):
        reconcile_now_action(order_admin, request, CardOrder.objects.all())
    assert not AuditEntry.objects.filter(
        action__in=["order.reconcile", "orders.reconcile_bulk"]
    ).exists()
