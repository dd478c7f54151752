"""The audit trail: who did what, to what, when and from where; configuration keeps its history."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import RequestFactory
from oauth2_provider.models import Application

from tracking.models import AuditEntry, CardOrder, D1Client, Issuer
from tracking.services import roles
from tracking.services.audit import audit_record

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.5"


def entries(action: str, **filters):
    return AuditEntry.objects.filter(action=action, **filters).order_by("id")


def test_audit_record_keeps_who_what_when_and_where(issuer, staff_user, settings):
    settings.D1_TRUSTED_PROXIES = [PROXY]
    order = CardOrder.objects.create(issuer=issuer, card_id="card-1", operation_id="op-1")
    request = RequestFactory().post(
        "/admin/",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="203.0.113.4",
        HTTP_USER_AGENT="Firefox/140",
    )
    request.user = staff_user

    entry = audit_record(
        user=None,
        action="order.replay",
        target=order,
        request=request,
        details={"changed": ["production_status"], "note": "card 4111111111111111"},
    )

    entry.refresh_from_db()
    assert (entry.user, entry.username, entry.action) == (staff_user, "staff", "order.replay")
    assert (entry.target_type, entry.target_id) == ("tracking.cardorder", str(order.pk))
    assert entry.target_repr == "card-1 / op-1"
    assert (entry.ip_address, entry.user_agent) == ("203.0.113.4", "Firefox/140")
    assert entry.details == {"changed": ["production_status"], "note": "card ************1111"}
    assert entry.at is not None


def test_issuer_changes_in_the_admin_are_audited_with_their_history(client, administrator_user):
    client.force_login(administrator_user)
    issuer = Issuer.objects.create(issuer_id="ISSUERX001", name="Example Bank")

    response = client.post(
        f"/admin/tracking/issuer/{issuer.pk}/change/",
        {
            "issuer_id": "ISSUERX001",
            "name": "Example Bank plc",
            "is_active": "",
            "d1_key_id": "kid-2",
        },
        REMOTE_ADDR="198.51.100.77",
    )

    assert response.status_code == 302, response.content
    change = entries("issuer.change").get()
    assert (change.username, change.ip_address) == ("administrator", "198.51.100.77")
    assert change.details["changes"]["name"] == ["Example Bank", "Example Bank plc"]
    assert change.details["changes"]["is_active"] == [True, False]
    assert [h.history_type for h in issuer.history.order_by("history_id")] == ["+", "~"]
    assert issuer.history.first().history_user == administrator_user


def test_d1_clients_created_in_the_admin_show_the_secret_once_and_are_audited(
    client, administrator_user, issuer
):
    client.force_login(administrator_user)

    response = client.post("/admin/tracking/d1client/add/", {"issuer": issuer.pk, "name": ""})

    assert response.status_code == 200
    client_id = response.context["credentials"].client_id
    secret = response.context["credentials"].client_secret
    assert secret in response.content.decode()
    assert secret not in Application.objects.get(client_id=client_id).client_secret
    d1_client = D1Client.objects.get()
    assert d1_client.issuer == issuer
    created = entries("d1_client.create").get()
    assert (created.username, created.target_id) == ("administrator", str(d1_client.pk))
    assert d1_client.history.count() == 1
    page = client.get(f"/admin/tracking/d1client/{d1_client.pk}/change/")
    assert secret not in page.content.decode()


def test_removing_a_d1_client_removes_its_oauth_application(administrator_user, issuer):
    from tracking.d1.clients import d1_client_create

    credentials = d1_client_create(issuer=issuer)
    credentials.client.delete()

    assert not Application.objects.filter(client_id=credentials.client_id).exists()
    assert entries("d1_client.delete").exists()


def test_group_and_permission_changes_are_audited(client, administrator_user):
    user = get_user_model().objects.create_user("newcomer", password="pw-newcomer-1234")
    operators = Group.objects.get(name=roles.OPERATORS)
    client.force_login(administrator_user)

    user.groups.add(operators)
    user.user_permissions.add(Permission.objects.get(codename="view_cardorder"))
    user.is_staff = True
    user.save()
    user.groups.remove(operators)

    mine = {"target_repr": "newcomer"}
    assert [e.details["items"] for e in entries("user.groups.add", **mine)] == [["operators"]]
    assert [e.details["items"] for e in entries("user.groups.remove", **mine)] == [["operators"]]
    permissions = entries("user.permissions.add", **mine).get()
    assert permissions.details["items"] == ["tracking.view_cardorder"]
    assert entries("user.change", **mine).get().details["changes"] == {"is_staff": [False, True]}
    assert entries("user.create", **mine).exists()


def test_permission_changes_made_in_the_admin_record_the_administrator(client, administrator_user):
    user = get_user_model().objects.create_user("clerk", password="pw-clerk-12345")
    viewers = Group.objects.get(name=roles.VIEWERS)
    client.force_login(administrator_user)
    form = client.get(f"/admin/auth/user/{user.pk}/change/").context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in ("password", "groups", "user_permissions")
    }
    data.update(
        {
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            "is_staff": "on",
            "is_active": "on",
            "groups": [viewers.pk],
        }
    )
    data.pop("date_joined", None)
    data.pop("last_login", None)

    response = client.post(f"/admin/auth/user/{user.pk}/change/", data, REMOTE_ADDR="198.51.100.80")

    assert response.status_code == 302, response.context["adminform"].form.errors
    added = entries("user.groups.add", target_repr="clerk").get()
    assert (added.username, added.ip_address, added.details["items"]) == (
        "administrator",
        "198.51.100.80",
        ["viewers"],
    )
    change = entries("user.change", target_repr="clerk").get()
    assert change.details["changes"]["is_staff"] == [False, True]


def test_the_audit_trail_is_visible_to_administrators_only(client, administrator_user, viewer_user):
    audit_record(user=administrator_user, action="order.acknowledge", target=None)

    client.force_login(administrator_user)
    page = client.get("/admin/tracking/auditentry/")
    assert page.status_code == 200
    assert "order.acknowledge" in page.content.decode()
    client.force_login(viewer_user)
    assert client.get("/admin/tracking/auditentry/").status_code == 403
