"""Staff login: lockout after repeated failures, and the optional TOTP second factor."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tracking.models import AuditEntry

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


def log_in(client, username: str, password: str, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def test_login_is_locked_after_repeated_failures(client, viewer_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        assert log_in(client, "viewer", "wrong").status_code in (200, 429)

    locked = log_in(client, "viewer", "viewer-password")

    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # The lockout is per user and address: the same user elsewhere is not locked out.
    elsewhere = log_in(client, "viewer", "viewer-password", REMOTE_ADDR="198.51.100.9")
    assert elsewhere.status_code == 302


def test_a_good_login_is_audited_with_its_address(client, viewer_user):
    response = log_in(client, "viewer", "viewer-password", REMOTE_ADDR="198.51.100.10")

    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="login")
    assert (entry.username, entry.ip_address) == ("viewer", "198.51.100.10")


@pytest.fixture
def otp_required(settings):
    settings.ADMIN_REQUIRE_OTP = True


def current_code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def test_a_password_alone_opens_neither_the_admin_nor_the_api(otp_required, client, staff_user):
    TOTPDevice.objects.create(user=staff_user, name="phone", confirmed=True)
    assert log_in(client, "staff", "staff-password").status_code == 302

    admin = client.get("/admin/")
    api = client.get("/api/v1/orders/")

    assert admin.status_code == 302
    assert admin["Location"].startswith("/accounts/otp/")
    assert api.status_code == 403


def test_the_second_factor_unlocks_the_session(otp_required, client, staff_user):
    device = TOTPDevice.objects.create(user=staff_user, name="phone", confirmed=True)
    log_in(client, "staff", "staff-password")

    verified = client.post(
        "/accounts/otp/?next=/admin/",
        {"otp_device": device.persistent_id, "otp_token": current_code(device)},
    )

    assert verified.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert client.get("/api/v1/orders/").status_code == 200
    assert AuditEntry.objects.filter(action="login.otp", username="staff").exists()


def test_a_wrong_code_is_refused_and_slows_the_next_try(otp_required, client, staff_user):
    device = TOTPDevice.objects.create(user=staff_user, name="phone", confirmed=True)
    log_in(client, "staff", "staff-password")

    wrong = client.post("/accounts/otp/", {"otp_device": device.persistent_id, "otp_token": "1"})
    right_too_soon = client.post(
        "/accounts/otp/", {"otp_device": device.persistent_id, "otp_token": current_code(device)}
    )

    assert wrong.status_code == right_too_soon.status_code == 200  # the form again
    assert client.get("/admin/").status_code == 302


def test_a_user_without_a_device_is_told_what_to_do(otp_required, client, staff_user):
    log_in(client, "staff", "staff-password")

    page = client.get("/accounts/otp/")

    assert page.status_code == 200
    assert b"create_totp_device" in page.content


def test_otp_is_off_by_default_outside_production(client, staff_user):
    log_in(client, "staff", "staff-password")

    page = client.get("/admin/")

    assert page.status_code == 200
    # the dashboard itself, not the second step of a two-factor login
    assert page.wsgi_request.path == "/admin/"
    assert b"create_totp_device" not in page.content
    assert page.context["user"].username == "staff"


def test_create_totp_device_prints_the_key_once(staff_user, capsys):
    call_command("create_totp_device", "staff")

    uri = capsys.readouterr().out.strip()
    assert uri.startswith("otpauth://totp/")
    assert TOTPDevice.objects.get(user=staff_user).confirmed
    assert AuditEntry.objects.filter(action="otp_device.create").exists()
