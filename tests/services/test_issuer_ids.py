"""Issuer ids in D1's format wherever they enter (admin, command, API), and every segment of the
URLs the D1 client builds quoted whole."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from tracking.d1.client import d1_url
from tracking.models import Issuer

pytestmark = pytest.mark.django_db

ATTACKS = ["../../a?b=", "A#frag/../", "@evil.ex/", "ISSUER 001", "ISSUER_001", "ISSUER-001"]


@pytest.fixture
def boss(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    return client


@pytest.mark.parametrize("issuer_id", ATTACKS)
def test_the_admin_refuses_an_issuer_id_outside_d1_s_format(boss, issuer_id):
    answer = boss.post(
        "/admin/tracking/issuer/add/", {"issuer_id": issuer_id, "name": "x", "is_active": "on"}
    )

    assert answer.status_code == 200  # the form again, with its error
    assert "Exactly 10 letters or digits" in answer.content.decode()
    assert not Issuer.objects.exists()


def test_the_admin_accepts_a_d1_issuer_id(boss):
    boss.post("/admin/tracking/issuer/add/", {"issuer_id": "BANKBBB001", "name": "B"})
    assert Issuer.objects.filter(issuer_id="BANKBBB001").exists()


@pytest.mark.parametrize("issuer_id", ATTACKS)
def test_create_issuer_refuses_an_issuer_id_outside_d1_s_format(issuer_id):
    with pytest.raises(CommandError, match="not a D1 issuerId"):
        call_command("create_issuer", issuer_id, "--name", "x")
    assert not Issuer.objects.exists()


def test_every_segment_of_a_d1_url_is_quoted_whole():
    url = d1_url(
        "https://d1.example/banking/",
        "issuers",
        "../../a?b=",
        "physicalCards",
        "@evil.ex/#x",
        "productionStatus",
    )

    assert url == (
        "https://d1.example/banking/issuers/..%2F..%2Fa%3Fb%3D/physicalCards/"
        "%40evil.ex%2F%23x/productionStatus"
    )
