"""Where the worker reads an issuer's D1 key: settings or the key folder by key id, never a path
an administrator typed; a file that is not a key becomes a failed attempt, not a dead sweep."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.fixtures.spec_examples import ISSUER_ID
from tests.services.reconcile.items import body, item
from tracking.models import CardOrder, Issuer, ReconcileAttempt
from tracking.services.reconcile import reconcile_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_dir(d1, settings, tmp_path):
    """D1_KEY_DIR holding the sandbox's key under its key id; no key path in the settings."""
    folder = tmp_path / "keys"
    folder.mkdir()
    shutil.copy(d1.keys.private_key_path, folder / f"{d1.keys.key_id}.pem")
    settings.D1_KEY_DIR = str(folder)
    settings.D1_PRIVATE_KEY_PATH = ""
    settings.D1_KEY_ID = ""
    return folder


def flagged_order(issuer: Issuer, post_notification, card_id: str) -> CardOrder:
    steps = [item(card_id, "CARD_PROD_REQUESTED"), item(card_id, "CARD_PROD_ONGOING")]  # a gap
    assert post_notification(body(*steps), issuer_id=issuer.issuer_id).status_code == 204
    order = CardOrder.objects.get(card_id=card_id)
    assert order.needs_reconcile
    return order


def test_an_issuer_key_is_read_from_the_key_folder_by_its_key_id(
    d1, key_dir, issuer, post_notification
):
    issuer.d1_key_id = d1.keys.key_id
    issuer.save()
    d1.truth_record(issuer_id=ISSUER_ID, items=[item("kd-1", "CARD_PROD_DONE")])
    order = flagged_order(issuer, post_notification, "kd-1")

    reconcile_sweep(inline=True)

    attempt = ReconcileAttempt.objects.get(order=order)
    assert (attempt.http_status, attempt.outcome, attempt.error) == (200, "changed", "")
    assert CardOrder.objects.get(pk=order.pk).production_status == "CARD_PROD_DONE"


@pytest.mark.parametrize(
    ("key_id", "make", "error"),
    [
        ("zero", lambda path: os.symlink("/dev/zero", path), "not a regular file"),
        ("huge", lambda path: path.write_bytes(b"A" * (17 * 1024)), "larger than 16 KiB"),
        ("junk", lambda path: path.write_bytes(b"not a key"), "cannot read the D1 private key"),
        ("absent", lambda path: None, "cannot open the D1 private key"),
    ],
)
def test_a_bad_key_file_is_a_failed_attempt_and_the_sweep_goes_on(
    d1, key_dir, issuer, post_notification, key_id, make, error
):
    # One issuer with a broken key, one with a good one: the sweep reconciles both.
    make(key_dir / f"{key_id}.pem")
    issuer.d1_key_id = key_id
    issuer.save()
    good = Issuer.objects.create(issuer_id="ISSUERX002", name="Good", d1_key_id=d1.keys.key_id)
    d1.truth_record(issuer_id=good.issuer_id, items=[item("kd-good", "CARD_PROD_DONE")])
    broken_order = flagged_order(issuer, post_notification, "kd-broken")
    good_order = flagged_order(good, post_notification, "kd-good")

    reconcile_sweep(inline=True)

    broken = ReconcileAttempt.objects.get(order=broken_order)
    assert broken.outcome == "error" and broken.http_status is None
    assert error in broken.error
    assert ReconcileAttempt.objects.get(order=good_order).http_status == 200
    assert CardOrder.objects.get(pk=good_order.pk).production_status == "CARD_PROD_DONE"


@pytest.mark.parametrize("key_id", ["../../etc/passwd", "/etc/passwd", ".hidden", "a/b"])
def test_a_key_id_cannot_name_a_file_outside_the_key_folder(key_id):
    from django.core.exceptions import ValidationError

    from tracking.d1.client import D1Config, D1ConfigurationError

    issuer = Issuer(issuer_id="ISSUERX009", name="x", d1_key_id=key_id)
    with pytest.raises(ValidationError):
        issuer.full_clean()
    with pytest.raises(D1ConfigurationError, match="not a valid file name"):
        D1Config.for_issuer("ISSUERX009", key_id=key_id)


def test_the_admin_shows_the_key_location_read_only(d1, key_dir, issuer, client):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    client.force_login(root)
    issuer.d1_key_id = d1.keys.key_id
    issuer.save()

    page = client.get(f"/admin/tracking/issuer/{issuer.pk}/change/").content.decode()

    assert str(key_dir / f"{d1.keys.key_id}.pem") in page
    assert 'name="d1_private_key_path"' not in page
    response = client.post(
        f"/admin/tracking/issuer/{issuer.pk}/change/",
        {
            "issuer_id": issuer.issuer_id,
            "name": issuer.name,
            "is_active": "on",
            "d1_key_id": issuer.d1_key_id,
            "d1_private_key_path": "/dev/zero",
        },
    )
    assert response.status_code == 302
    assert not hasattr(Issuer.objects.get(pk=issuer.pk), "d1_private_key_path")
