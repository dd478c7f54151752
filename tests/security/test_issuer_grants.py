"""Issuers kept apart: an operator and a read-API token granted one of two issuers see and act on
nothing of the other, which answers everywhere as if it did not exist."""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import io

import pytest
import time_machine
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

from tests.conftest import make_staff
from tests.fixtures import spec_examples as spec
from tests.fixtures.api_tokens import read_api_client, read_api_token
from tracking.admin.dashboard import dashboard_reads
from tracking.d1.clients import d1_client_create
from tracking.models import (
    AuditEntry,
    CardOrder,
    Issuer,
    IssuerGrant,
    OrderAcknowledgement,
    ReadApiToken,
    ReconcileAttempt,
    RefusalTally,
)
from tracking.models.outbound import EventEndpoint
from tracking.services import roles
from tracking.services.api_tokens import IssuersNotGranted, api_token_create
from tracking.services.audit import Actor, audit_record
from tracking.services.order_actions import order_replay

pytestmark = pytest.mark.django_db

OTHER_ID = "BANKBBB001"
NOBODY_ID = "NOBANK0001"
OURS_CARD = "card-ours-0001"
THEIRS_CARD = "card-theirs-01"
THEIRS_FILE = "THEIRS_20260302_01.csv"


def _order(post_notification, *, issuer_id: str, card_id: str, file_name: str) -> CardOrder:
    item = {
        **spec.E6["operations"][0],
        "cardId": card_id,
        "operationId": f"op-{card_id}",
        "inputFileName": file_name,
    }
    response = post_notification({"operations": [item]}, issuer_id=issuer_id)
    assert response.status_code == 204, response.content
    return CardOrder.objects.get(card_id=card_id)


@pytest.fixture
def two_issuers(issuer, post_notification):
    """Our issuer and another, each with one shipped order."""
    other = Issuer.objects.create(issuer_id=OTHER_ID, name="Other Bank")
    ours = _order(
        post_notification, issuer_id=issuer.issuer_id, card_id=OURS_CARD, file_name="OURS.csv"
    )
    theirs = _order(
        post_notification, issuer_id=OTHER_ID, card_id=THEIRS_CARD, file_name=THEIRS_FILE
    )
    return issuer, other, ours, theirs


@pytest.fixture
def scoped_operator(two_issuers):
    issuer, *_ = two_issuers
    return make_staff("scoped", roles.OPERATORS, issuers=[issuer])


@pytest.fixture
def operator_client(scoped_operator) -> Client:
    client = Client()
    client.force_login(scoped_operator)
    return client


# ---------------------------------------------------------------------------- the admin


def test_the_orders_list_and_its_issuer_filter_show_only_the_granted_issuer(
    two_issuers, operator_client
):
    page = operator_client.get("/admin/tracking/cardorder/").content.decode()
    assert OURS_CARD in page
    assert THEIRS_CARD not in page
    assert OTHER_ID not in page  # not even as a choice of the issuer filter


def test_the_order_page_of_another_issuer_does_not_exist(two_issuers, operator_client):
    _, _, ours, theirs = two_issuers
    assert operator_client.get(f"/admin/tracking/cardorder/{ours.pk}/change/").status_code == 200
    missing = CardOrder.objects.order_by("-pk").first().pk + 1000
    theirs_page = operator_client.get(f"/admin/tracking/cardorder/{theirs.pk}/change/")
    missing_page = operator_client.get(f"/admin/tracking/cardorder/{missing}/change/")
    assert theirs_page.status_code == missing_page.status_code == 404
    assert THEIRS_CARD not in theirs_page.content.decode()


def test_search_finds_nothing_of_another_issuer(two_issuers, operator_client):
    _, _, ours, theirs = two_issuers
    found = operator_client.get("/admin/tracking/cardorder/", {"q": OURS_CARD})
    assert found.status_code == 302 and found["Location"].endswith(f"/{ours.pk}/change/")
    page = operator_client.get("/admin/tracking/cardorder/", {"q": THEIRS_CARD})
    assert page.status_code == 200
    assert f"/cardorder/{theirs.pk}/change/" not in page.content.decode()
    assert list(page.context["cl"].result_list) == []
    files = operator_client.get("/admin/tracking/cardorder/", {"q": "THEIRS_2026"})
    assert files.context["matching_files"] == []
    assert list(files.context["cl"].result_list) == []


def test_the_csv_export_holds_only_the_granted_issuer(two_issuers, operator_client):
    response = operator_client.get("/admin/tracking/cardorder/export.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    cards = {cell for row in rows for cell in row}
    assert OURS_CARD in cards
    assert THEIRS_CARD not in cards and OTHER_ID not in cards


def test_what_d1_sent_and_calls_to_d1_of_another_issuer_are_not_listed(
    two_issuers, operator_client
):
    for url in (
        "/admin/tracking/operationevent/",
        "/admin/tracking/notificationdelivery/",
        "/admin/tracking/issuer/",
    ):
        page = operator_client.get(url)
        assert page.status_code == 200, url
        assert OTHER_ID not in page.content.decode() and THEIRS_CARD not in page.content.decode()
    _, other, _, _ = two_issuers
    issuer_page = operator_client.get(f"/admin/tracking/issuer/{other.pk}/change/")
    assert issuer_page.status_code == 302  # the admin's "does not exist", to its index
    assert OTHER_ID not in operator_client.get(issuer_page["Location"]).content.decode()


def test_the_dashboard_counts_only_the_granted_issuer(two_issuers, scoped_operator):
    everything = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    assert sum(stage.orders for stage in dashboard_reads(everything)[0].stages) == 0
    assert dashboard_reads(everything)[0].terminal["shipped"]["24h"] == 2
    scoped, _, last = dashboard_reads(scoped_operator)
    assert scoped.terminal["shipped"]["24h"] == 1
    # Each queue's count too: both orders wait for reconciliation, one of them ours.
    CardOrder.objects.update(needs_reconcile=True)
    assert dashboard_reads(everything)[0].queues["reconcile"] == 2
    assert dashboard_reads(scoped_operator)[0].queues["reconcile"] == 1
    assert sum(hour.deliveries for hour in scoped.hours) == 1
    assert [row["issuer"].issuer_id for row in last] == [spec.ISSUER_ID]


def test_a_file_page_of_another_issuer_does_not_exist(two_issuers, operator_client):
    issuer, other, _, _ = two_issuers
    url = "/admin/tracking/productionfile/file/"
    assert operator_client.get(url, {"issuer": issuer.pk, "name": "OURS.csv"}).status_code == 200
    assert operator_client.get(url, {"issuer": other.pk, "name": THEIRS_FILE}).status_code == 404


# ---------------------------------------------------------------------------- acting on orders


def test_reconcile_now_and_acknowledge_refuse_another_issuers_order_as_missing(
    two_issuers, operator_client
):
    _, _, _, theirs = two_issuers
    audit_before = AuditEntry.objects.count()
    base = f"/admin/tracking/cardorder/{theirs.pk}"
    assert operator_client.post(f"{base}/reconcile/").status_code == 404
    assert operator_client.post(f"{base}/acknowledge/", {"note": "seen"}).status_code == 404
    assert operator_client.post(f"{base}/replay/").status_code == 404
    assert not ReconcileAttempt.objects.filter(order=theirs).exists()
    assert not OrderAcknowledgement.objects.filter(order=theirs).exists()
    assert AuditEntry.objects.count() == audit_before


def test_look_up_offers_and_accepts_only_granted_issuers(two_issuers, operator_client):
    url = "/admin/tracking/cardorder/look-up/"
    assert OTHER_ID not in operator_client.get(url).content.decode()
    theirs = operator_client.post(url, {"issuer": OTHER_ID, "card_id": THEIRS_CARD})
    nobody = operator_client.post(url, {"issuer": NOBODY_ID, "card_id": THEIRS_CARD})
    assert theirs.status_code == nobody.status_code == 200
    # The same refusal as for an issuer that does not exist, and D1 was not asked.
    assert theirs.context["form"].errors["issuer"] == [
        e.replace(NOBODY_ID, OTHER_ID) for e in nobody.context["form"].errors["issuer"]
    ]
    assert not ReconcileAttempt.objects.exists()


def test_registration_refuses_another_issuer_as_an_unknown_one(two_issuers, scoped_operator):
    api = read_api_client(scoped_operator)
    theirs = api.post(
        "/api/v1/orders/", {"issuer_id": OTHER_ID, "card_id": "card-planted"}, format="json"
    )
    nobody = api.post(
        "/api/v1/orders/", {"issuer_id": NOBODY_ID, "card_id": "card-planted"}, format="json"
    )
    assert theirs.status_code == nobody.status_code == 400
    assert theirs.json()["issuer_id"] == [
        m.replace(NOBODY_ID, OTHER_ID) for m in nobody.json()["issuer_id"]
    ]
    batch = api.post(
        "/api/v1/orders/",
        [
            {"issuer_id": spec.ISSUER_ID, "card_id": "card-ok"},
            {"issuer_id": OTHER_ID, "card_id": "x"},
        ],
        format="json",
    )
    # The valid row applies; the other issuer's row is refused on its own, as an unknown one.
    assert batch.status_code == 201
    (refused,) = batch.json()["refused"]
    assert refused["index"] == 1 and list(refused["errors"]) == ["issuer_id"]
    assert CardOrder.objects.filter(card_id="card-ok").exists()
    assert not CardOrder.objects.filter(card_id__in=["card-planted", "x"]).exists()


def test_the_upload_refuses_rows_of_another_issuer(two_issuers, operator_client):
    body = f"issuer_id,card_id\n{spec.ISSUER_ID},card-file-1\n{OTHER_ID},card-file-2\n"
    upload = io.BytesIO(body.encode())
    upload.name = "orders.csv"
    page = operator_client.post("/admin/tracking/cardorder/register/", {"file": upload})
    parsed = page.context["parsed"]
    assert [row["card_id"] for row in parsed.valid] == ["card-file-1"]
    assert [r["row"]["card_id"] for r in parsed.refused] == ["card-file-2"]
    assert OTHER_ID not in page.context["form"].fields["issuer"].choices.__repr__()


# ---------------------------------------------------------------------------- the read API


def test_a_scoped_token_lists_and_reads_only_its_issuer(two_issuers, scoped_operator):
    _, _, ours, theirs = two_issuers
    api = read_api_client(scoped_operator)
    listed = api.get("/api/v1/orders/").json()["results"]
    assert [o["card_id"] for o in listed] == [OURS_CARD]
    assert api.get("/api/v1/orders/", {"issuer_id": OTHER_ID}).json()["results"] == []
    assert api.get(f"/api/v1/orders/{ours.pk}/").status_code == 200
    assert api.get(f"/api/v1/orders/{theirs.pk}/").status_code == 404


def test_a_token_narrowed_when_made_sees_fewer_issuers_than_its_user(two_issuers):
    _, _, ours, _ = two_issuers
    root = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    out = io.StringIO()
    call_command(
        "create_api_token", "root", "--issuers", OTHER_ID, stdout=out, stderr=io.StringIO()
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip().removeprefix('token=')}")
    assert [o["card_id"] for o in api.get("/api/v1/orders/").json()["results"]] == [THEIRS_CARD]
    assert api.get(f"/api/v1/orders/{ours.pk}/").status_code == 404
    # The user's other tokens keep the user's whole grant.
    whole = read_api_client(root).get("/api/v1/orders/").json()["results"]
    assert {o["card_id"] for o in whole} == {OURS_CARD, THEIRS_CARD}


def test_a_token_cannot_be_narrowed_to_an_issuer_its_user_is_not_granted(
    two_issuers, scoped_operator
):
    with pytest.raises(IssuersNotGranted):
        api_token_create(
            user=scoped_operator, name="x", actor=Actor.of_command("t"), issuer_ids=[OTHER_ID]
        )
    with pytest.raises(CommandError):
        call_command("create_api_token", "scoped", "--issuers", OTHER_ID, stdout=io.StringIO())
    assert not ReadApiToken.objects.exists()


def test_new_users_start_with_no_issuer(two_issuers):
    newcomer = make_staff("newcomer", roles.OPERATORS, issuers=[])
    assert read_api_client(newcomer).get("/api/v1/orders/").json()["results"] == []


# ---------------------------------------------------------------------------- managing grants


def test_grant_issuers_grants_and_revokes_with_an_audit_entry(two_issuers):
    newcomer = make_staff("newcomer", roles.VIEWERS, issuers=[])
    call_command("grant_issuers", "newcomer", OTHER_ID, stdout=io.StringIO())
    assert list(newcomer.issuer_grants.values_list("issuer__issuer_id", flat=True)) == [OTHER_ID]
    added = AuditEntry.objects.get(action="issuer_grant.add")
    assert added.details["issuers"] == [OTHER_ID] and added.target_id == str(newcomer.pk)
    call_command("grant_issuers", "newcomer", OTHER_ID, "--revoke", stdout=io.StringIO())
    assert not newcomer.issuer_grants.exists()
    assert AuditEntry.objects.get(action="issuer_grant.remove").details["issuers"] == [OTHER_ID]
    with pytest.raises(CommandError):
        call_command("grant_issuers", "newcomer", NOBODY_ID, stdout=io.StringIO())


def test_ensure_staff_user_puts_the_user_in_one_role(db):
    call_command(
        "ensure_staff_user",
        "clerk",
        "--password",
        "pw-12345678",
        "--role",
        "operators",
        stdout=io.StringIO(),
    )
    call_command(
        "ensure_staff_user",
        "clerk",
        "--password",
        "pw-12345678",
        "--role",
        "viewers",
        stdout=io.StringIO(),
    )
    clerk = get_user_model().objects.get(username="clerk")
    assert list(clerk.groups.values_list("name", flat=True)) == ["viewers"]
    assert not clerk.issuer_grants.exists()


def test_an_administrator_grants_only_issuers_it_holds_on_the_users_page(two_issuers):
    issuer, other, _, _ = two_issuers
    administrator = make_staff("admin-a", roles.ADMINISTRATORS, issuers=[issuer])
    newcomer = make_staff("newcomer", roles.VIEWERS, issuers=[other])
    client = Client()
    client.force_login(administrator)
    url = f"/admin/auth/user/{newcomer.pk}/change/"
    page = client.get(url)
    assert OTHER_ID not in page.content.decode()
    offered = page.context["adminform"].form.fields["issuers"].queryset
    assert list(offered.values_list("issuer_id", flat=True)) == [spec.ISSUER_ID]
    joined = newcomer.date_joined
    data = {
        "username": "newcomer",
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        "groups": list(newcomer.groups.values_list("pk", flat=True)),
        "issuers": [str(issuer.pk)],
    }
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    # Ours was granted; theirs, not offered to this administrator, was kept as it was.
    assert set(newcomer.issuer_grants.values_list("issuer__issuer_id", flat=True)) == {
        spec.ISSUER_ID,
        OTHER_ID,
    }
    assert AuditEntry.objects.get(action="issuer_grant.add").details["issuers"] == [spec.ISSUER_ID]


# ---------------------------------------------------------------------------- the smaller points


def test_a_cursor_with_a_doubled_sign_is_a_client_error(staff_user):
    response = read_api_client(staff_user).get("/api/v1/orders/", {"cursor": "cD0tLTE="})
    assert response.status_code == 400
    assert "cursor" in response.json()


def test_a_read_api_token_dies_with_its_users_deactivation(staff_user):
    key = read_api_token(staff_user)
    staff_user.is_active = False
    staff_user.save()
    staff_user.is_active = True
    staff_user.save()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/orders/").status_code == 401
    assert AuditEntry.objects.filter(action="api_token.revoke").exists()


def test_third_party_admin_lists_refuse_lookups_they_do_not_offer(issuer):
    d1_client_create(issuer=issuer)
    root = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    client = Client()
    client.force_login(root)
    url = "/admin/oauth2_provider/application/"
    assert client.get(url).status_code == 200
    assert client.get(url, {"client_secret__startswith": "a"}).status_code == 400
    assert client.get(url, {"client_secret__startswith": ""}).status_code == 400


def test_switching_d1_clients_off_reports_the_tokens_it_revoked(issuer):
    credentials = d1_client_create(issuer=issuer)
    application = Application.objects.get(client_id=credentials.client_id)
    for n in range(3):
        AccessToken.objects.create(
            application=application, token=f"tok-{n}", expires="2099-01-01T00:00:00Z"
        )
    root = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    client = Client()
    client.force_login(root)
    response = client.post(
        "/admin/tracking/d1client/",
        {"action": "deactivate", "_selected_action": [credentials.client.pk]},
        follow=True,
    )
    messages = [str(m) for m in response.context["messages"]]
    assert "Switched off 1 client(s); 3 token(s) revoked." in messages
    assert not AccessToken.objects.exists()


def test_staff_of_before_grants_keep_every_issuer(two_issuers, scoped_operator):
    # What migration 0015 did for staff that existed then, as `make_staff` does by default.
    unscoped = make_staff("veteran", roles.OPERATORS)
    assert IssuerGrant.objects.filter(user=unscoped).count() == 2
    assert {
        o["card_id"] for o in read_api_client(unscoped).get("/api/v1/orders/").json()["results"]
    } == {
        OURS_CARD,
        THEIRS_CARD,
    }


def test_the_audit_trail_holds_nothing_about_another_issuer(two_issuers):
    issuer, _, ours, theirs = two_issuers
    actor = Actor.of_command("tests")
    for order in (ours, theirs):
        order_replay(order_id=order.pk, actor=actor)
    for issuer_id in (spec.ISSUER_ID, OTHER_ID):
        audit_record(
            user=None, action="orders.register", target=None, details={"issuer": issuer_id}
        )
    administrator = make_staff("admin-a", roles.ADMINISTRATORS, issuers=[issuer])
    client = Client()
    client.force_login(administrator)
    listed = client.get("/admin/tracking/auditentry/")
    shown = [
        entry.target_id
        for entry in listed.context["cl"].result_list
        if entry.action == "order.replay"
    ]
    assert shown == [str(ours.pk)]
    registered = [
        e.details for e in listed.context["cl"].result_list if e.action == "orders.register"
    ]
    assert registered == [{"issuer": spec.ISSUER_ID}]
    entry = AuditEntry.objects.get(action="order.replay", target_id=str(theirs.pk))
    assert client.get(f"/admin/tracking/auditentry/{entry.pk}/change/").status_code == 302


def test_calls_to_d1_and_refused_calls_of_another_issuer_are_not_listed(
    two_issuers, operator_client
):
    _, _, ours, theirs = two_issuers
    for order in (ours, theirs):
        ReconcileAttempt.objects.create(order=order, outcome="unchanged")
    attempts = operator_client.get("/admin/tracking/reconcileattempt/").context["cl"]
    assert [a.order_id for a in attempts.result_list] == [ours.pk]
    now = timezone.now()
    for issuer_id, code in ((OTHER_ID, "theirs"), (NOBODY_ID, "nobody"), (spec.ISSUER_ID, "ours")):
        RefusalTally.objects.create(
            minute=now,
            source="webhook",
            status_code=401,
            error_code=code,
            count=1,
            first_at=now,
            last_at=now,
            issuer_id_in_path=issuer_id,
        )
    refused = operator_client.get("/admin/tracking/refusaltally/").context["cl"]
    # A call naming an issuer nobody registered gives no issuer away; one naming theirs does.
    assert sorted(r.error_code for r in refused.result_list) == ["nobody", "ours"]


def test_the_migration_grants_staff_and_token_holders_every_issuer(two_issuers):
    migration = importlib.import_module("tracking.migrations.0015_grants_issuer_grants")
    staff = make_staff("before", roles.VIEWERS, issuers=[])
    integration = get_user_model().objects.create_user("integration", password="pw-1234567890")
    read_api_token(integration)
    outsider = get_user_model().objects.create_user("outsider", password="pw-1234567890")
    migration.grant_existing_staff_every_issuer(django_apps, None)
    for user in (staff, integration):
        granted = set(user.issuer_grants.values_list("issuer__issuer_id", flat=True))
        assert granted == {spec.ISSUER_ID, OTHER_ID}
    assert not outsider.issuer_grants.exists()


def test_the_history_of_another_issuer_is_not_shown(two_issuers, scoped_operator):
    issuer, other, _, _ = two_issuers
    administrator = make_staff("admin-a", roles.ADMINISTRATORS, issuers=[issuer])
    client = Client()
    client.force_login(administrator)
    assert client.get(f"/admin/tracking/issuer/{issuer.pk}/history/").status_code == 200
    assert client.get(f"/admin/tracking/issuer/{other.pk}/history/").status_code == 404
    version = other.history.first().history_id
    url = f"/admin/tracking/issuer/{other.pk}/history/{version}/"
    assert client.get(url).status_code == 404
    assert client.get("/admin/tracking/issuer/not-a-number/history/").status_code == 404


def test_an_administrator_sees_the_issuer_it_registers(db):
    administrator = make_staff("admin-a", roles.ADMINISTRATORS, issuers=[])
    client = Client()
    client.force_login(administrator)
    response = client.post(
        "/admin/tracking/issuer/add/",
        {"issuer_id": "NEWBANK001", "name": "New Bank", "is_active": "on", "d1_key_id": ""},
    )
    assert response.status_code == 302
    new = Issuer.objects.get(issuer_id="NEWBANK001")
    assert client.get(f"/admin/tracking/issuer/{new.pk}/change/").status_code == 200
    assert AuditEntry.objects.get(action="issuer_grant.add").details["issuers"] == ["NEWBANK001"]


def test_d1s_oauth_applications_and_tokens_of_another_issuer_are_not_listed(two_issuers):
    issuer, other, _, _ = two_issuers
    ours, theirs = d1_client_create(issuer=issuer), d1_client_create(issuer=other)
    for credentials in (ours, theirs):
        application = Application.objects.get(client_id=credentials.client_id)
        AccessToken.objects.create(
            application=application,
            token=f"tok-{credentials.client_id[:8]}",
            expires="2099-01-01T00:00:00Z",
        )
    administrator = make_staff("admin-a", roles.ADMINISTRATORS, issuers=[issuer])
    client = Client()
    client.force_login(administrator)
    for url in ("/admin/oauth2_provider/application/", "/admin/oauth2_provider/accesstoken/"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert len(page.context["cl"].result_list) == 1, url
        assert OTHER_ID not in page.content.decode()
        assert theirs.client_id not in page.content.decode()
    theirs_application = Application.objects.get(client_id=theirs.client_id)
    page = client.get(f"/admin/oauth2_provider/application/{theirs_application.pk}/change/")
    assert page.status_code == 302


def test_dashboard_alerts_name_only_granted_issuers(two_issuers, scoped_operator, settings):
    settings.ALERT_SILENCE_AFTER = 3600
    veteran = make_staff("veteran", roles.OPERATORS)  # granted every issuer there is
    with time_machine.travel(timezone.now() + dt.timedelta(hours=2), tick=False):
        silent = {a.subject for a in dashboard_reads(veteran)[1] if a.kind == "inbound_silence"}
        scoped = {
            a.subject for a in dashboard_reads(scoped_operator)[1] if a.kind == "inbound_silence"
        }
    assert silent == {spec.ISSUER_ID, OTHER_ID}
    assert scoped == {spec.ISSUER_ID}


def test_a_page_asked_for_with_an_id_that_is_no_number_answers_404(two_issuers, operator_client):
    for url in (
        "/admin/tracking/cardorder/abc/change/",
        "/admin/tracking/productionfile/abc/change/",
        "/admin/tracking/issuer/abc/history/",
    ):
        assert operator_client.get(url).status_code == 404, url


# ---------------------------------------------------------------------------- outbound events


# Committed: on PostgreSQL the feed lists only events of transactions that have committed.
@pytest.mark.django_db(transaction=True)
def test_the_event_feed_and_the_outbound_pages_show_only_the_granted_issuer(two_issuers):
    issuer, other, _ours, _theirs = two_issuers
    administrator = make_staff("scoped-admin", roles.ADMINISTRATORS, issuers=[issuer])
    for each in (issuer, other):
        EventEndpoint.objects.create(issuer=each, url=f"https://{each.issuer_id.lower()}.example/")

    feed = read_api_client(administrator).get("/api/v1/events/", {"limit": 1000})
    assert feed.status_code == 200, feed.content
    cards = {event["data"]["order"]["card_id"] for event in feed.json()["events"]}
    assert cards == {OURS_CARD}  # the other issuer's events are not in the feed
    assert {event["issuer_id"] for event in feed.json()["events"]} == {issuer.issuer_id}

    client = Client()
    client.force_login(administrator)
    endpoints = client.get("/admin/tracking/eventendpoint/")
    assert endpoints.status_code == 200
    assert f"{issuer.issuer_id.lower()}.example" in endpoints.content.decode()
    assert f"{OTHER_ID.lower()}.example" not in endpoints.content.decode()
    theirs_endpoint = EventEndpoint.objects.get(issuer=other)
    page = client.get(f"/admin/tracking/eventendpoint/{theirs_endpoint.pk}/change/")
    assert page.status_code in (302, 404)  # as if it did not exist
    if page.status_code == 302:
        assert "/admin/" in page["Location"] and str(theirs_endpoint.pk) not in page["Location"]
