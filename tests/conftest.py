"""Shared fixtures: an issuer, staff with API tokens, and a helper that posts to the webhook."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.db.models.signals import post_save
from rest_framework.test import APIClient

from tests.fixtures.api_tokens import read_api_client
from tests.fixtures.spec_examples import ISSUER_ID
from tracking.models import Issuer, IssuerGrant
from tracking.services import roles
from tracking.services.roles import roles_ensure

# The shared browser (`chromium`) for every browser test.
pytest_plugins = ["tests.fixtures.browser"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` need the real PostgreSQL; on SQLite they are skipped."""
    del config
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with empty rate-limit windows (and nothing else cached)."""
    from tracking.infrastructure.short_memory import short_memories_clear

    cache.clear()
    short_memories_clear()


@pytest.fixture(autouse=True)
def _site_language():
    """Each test starts, and ends, in the site's language (a Japanese page leaves it active)."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


# Staff of the tests that are not about grants see every issuer, those made later in the test too,
# as staff who existed before grants did (the migration gave them every issuer).
_GRANTED_EVERY_ISSUER: set[int] = set()


def _grant_new_issuer_to_unscoped_staff(sender, instance, created, raw=False, **kwargs) -> None:
    if created and not raw and _GRANTED_EVERY_ISSUER:
        IssuerGrant.objects.bulk_create(
            [IssuerGrant(user_id=pk, issuer=instance) for pk in _GRANTED_EVERY_ISSUER],
            ignore_conflicts=True,
        )


post_save.connect(
    _grant_new_issuer_to_unscoped_staff, sender=Issuer, dispatch_uid="tests-unscoped-staff"
)


@pytest.fixture(autouse=True)
def _no_unscoped_staff_yet():
    _GRANTED_EVERY_ISSUER.clear()
    yield
    _GRANTED_EVERY_ISSUER.clear()


def grant_every_issuer(user) -> None:
    """Grant `user` every issuer, including those the test makes later."""
    _GRANTED_EVERY_ISSUER.add(user.pk)
    IssuerGrant.objects.bulk_create(
        [IssuerGrant(user=user, issuer=issuer) for issuer in Issuer.objects.all()],
        ignore_conflicts=True,
    )


@pytest.fixture
def issuer(db) -> Issuer:
    return Issuer.objects.create(issuer_id=ISSUER_ID, name="Example Bank")


@pytest.fixture
def d1_client() -> APIClient:
    return APIClient()


@pytest.fixture
def post_notification(d1_client) -> Callable[..., Any]:
    """POST a body to the webhook the way D1 does; dicts are sent as JSON."""

    def post(body: Any, *, issuer_id: str = ISSUER_ID, **extra):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        content_type = extra.pop("content_type", "application/json")
        return d1_client.generic(
            "POST",
            f"/notifications/d1/v2/issuers/{issuer_id}/cards",
            data,
            content_type=content_type,
            **extra,
        )

    return post


def make_staff(username: str, role: str | None, *, issuers: list[Issuer] | None = None):
    """A staff login in one of the groups of `tracking.services.roles` (None: no group).

    It may see every issuer unless `issuers` names those it is granted (`[]`: none).
    """
    user = get_user_model().objects.create_user(
        username, f"{username}@example.com", f"{username}-password", is_staff=True
    )
    if role is not None:
        group = Group.objects.filter(name=role).first() or roles_ensure()[role]
        user.groups.add(group)
    if issuers is None:
        grant_every_issuer(user)
    else:
        IssuerGrant.objects.bulk_create([IssuerGrant(user=user, issuer=i) for i in issuers])
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def staff_user(db):
    """An operator: reads everything (personal fields unmasked) and may act on orders."""
    return make_staff("staff", roles.OPERATORS)


@pytest.fixture
def viewer_user(db):
    return make_staff("viewer", roles.VIEWERS)


@pytest.fixture
def administrator_user(db):
    return make_staff("administrator", roles.ADMINISTRATORS)


@pytest.fixture
def api(staff_user) -> APIClient:
    """A read-API client authenticated with a DRF token, as an integration would be."""
    return read_api_client(staff_user)


@pytest.fixture
def order_state(api) -> Callable[[str], dict]:
    """The order of a card as the read API shows it (exactly one order expected)."""

    def state(card_id: str) -> dict:
        response = api.get("/api/v1/orders/", {"card_id": card_id})
        assert response.status_code == 200, response.content
        results = response.json()["results"]
        assert len(results) == 1, results
        return results[0]

    return state


def is_postgres() -> bool:
    return connection.vendor == "postgresql"
