"""Fixtures of the back-office tests: the realistic order set and staff with given roles."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from tests.conftest import grant_every_issuer
from tests.fixtures.backoffice import load_backoffice_orders
from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.conftest import d1, sandbox  # noqa: F401 (the D1 sandbox, for reconcile now)
from tracking.models import Issuer


@pytest.fixture(scope="module")
def backoffice_data(django_db_setup, django_db_blocker):
    """The realistic order set, written once per module (tests roll back their own changes)."""
    with django_db_blocker.unblock():
        issuer = Issuer.objects.create(issuer_id=ISSUER_ID, name="Example Bank")
        orders = load_backoffice_orders(issuer)
    yield issuer.pk, orders
    with django_db_blocker.unblock():
        _delete_tracking_rows()


def _delete_tracking_rows() -> None:
    models = [
        "ReconcileAttempt",
        "OrderAcknowledgement",
        "OperationEvent",
        "CardOrder",
        "NotificationDelivery",
        "Issuer",
    ]
    for name in models:
        try:
            apps.get_model("tracking", name).objects.all().delete()
        except LookupError:
            continue


@pytest.fixture
def orders(backoffice_data, db) -> dict[str, int]:
    """{name: order pk} of the realistic order set (see tests.fixtures.backoffice)."""
    return backoffice_data[1]


@pytest.fixture
def bo_issuer(backoffice_data, db) -> Issuer:
    return Issuer.objects.get(pk=backoffice_data[0])


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "boss-password")


@pytest.fixture
def admin_client_as(db):
    """A logged-in client for a staff user holding exactly the given permissions."""

    def make(*codenames: str, username: str = "clerk") -> Client:
        user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
        grant_every_issuer(user)
        for codename in codenames:
            app_label, code = codename.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=code)
            )
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def boss(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client
