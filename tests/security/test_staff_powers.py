"""No role may grow itself: what an administrator (not a superuser) tried, and is now refused.

Each refused request answers 403, changes nothing and leaves an `access.refused` audit entry.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django_otp.plugins.otp_totp.models import TOTPDevice

from tracking.models import AuditEntry
from tracking.services import roles

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def admin_client(client, administrator_user):
    client.force_login(administrator_user)
    return client


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", "pw-root-12345")


def change_url(user) -> str:
    return f"/admin/auth/user/{user.pk}/change/"


def user_form(user, **changes) -> dict:
    """The change form of `user` as the page posts it, with `changes` applied."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [str(g.pk) for g in user.groups.all()],
        "user_permissions": [str(p.pk) for p in user.user_permissions.all()],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def refusals() -> list[str]:
    return [e.details["reason"] for e in AuditEntry.objects.filter(action="access.refused")]


def group_id(name: str) -> str:
    return str(Group.objects.get(name=name).pk)


def test_an_administrator_cannot_make_themselves_superuser(admin_client, administrator_user):
    response = admin_client.post(
        change_url(administrator_user), user_form(administrator_user, is_superuser="on")
    )

    assert response.status_code == 403
    administrator_user.refresh_from_db()
    assert not administrator_user.is_superuser
    assert refusals() == ["only superusers grant superuser status"]


def test_an_administrator_cannot_change_their_own_groups(admin_client, administrator_user):
    operators = group_id(roles.OPERATORS)
    response = admin_client.post(
        change_url(administrator_user), user_form(administrator_user, groups=[operators])
    )

    assert response.status_code == 403
    assert list(administrator_user.groups.values_list("name", flat=True)) == [roles.ADMINISTRATORS]
    assert refusals() == ["nobody changes their own groups"]


def test_an_administrator_cannot_grant_the_administrators_group(admin_client, viewer_user):
    response = admin_client.post(
        change_url(viewer_user),
        user_form(viewer_user, groups=[group_id(roles.VIEWERS), group_id(roles.ADMINISTRATORS)]),
    )

    assert response.status_code == 403
    assert not viewer_user.groups.filter(name=roles.ADMINISTRATORS).exists()
    assert refusals() == ["only superusers grant the administrators group"]


def test_an_administrator_may_still_give_a_user_a_lesser_role(admin_client, viewer_user):
    response = admin_client.post(
        change_url(viewer_user), user_form(viewer_user, groups=[group_id(roles.OPERATORS)])
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(viewer_user.groups.values_list("name", flat=True)) == [roles.OPERATORS]
    assert AuditEntry.objects.filter(action="user.groups.add", username="administrator").exists()
    assert refusals() == []


def test_an_administrator_cannot_grant_a_permission_they_do_not_hold(admin_client, viewer_user):
    change_group = Permission.objects.get(codename="change_group")
    response = admin_client.post(
        change_url(viewer_user), user_form(viewer_user, user_permissions=[str(change_group.pk)])
    )

    assert response.status_code == 403
    assert not viewer_user.user_permissions.exists()
    assert refusals() == ["a permission the granting user does not hold"]


def test_an_administrator_cannot_change_a_superuser(admin_client, root):
    response = admin_client.post(change_url(root), user_form(root, is_active=None))

    assert response.status_code == 403
    root.refresh_from_db()
    assert root.is_active
    assert refusals() == ["only superusers change a superuser"]


def test_only_superusers_change_another_users_password(
    admin_client, client, administrator_user, staff_user, root
):
    url = f"/admin/auth/user/{staff_user.pk}/password/"
    new = {"password1": "a-new-pw-0987!", "password2": "a-new-pw-0987!", "usable_password": "true"}

    refused = admin_client.post(url, new)
    assert refused.status_code == 403
    staff_user.refresh_from_db()
    assert staff_user.check_password("staff-password")
    assert refusals() == ["only superusers change another's password"]

    own = admin_client.get(f"/admin/auth/user/{administrator_user.pk}/password/")
    assert own.status_code == 200

    client.force_login(root)
    assert client.post(url, new).status_code == 302
    staff_user.refresh_from_db()
    assert staff_user.check_password("a-new-pw-0987!")


def test_only_superusers_grant_the_administrators_group(client, root, viewer_user):
    client.force_login(root)
    response = client.post(
        change_url(viewer_user), user_form(viewer_user, groups=[group_id(roles.ADMINISTRATORS)])
    )
    assert response.status_code == 302
    assert viewer_user.groups.filter(name=roles.ADMINISTRATORS).exists()


def device_form(user) -> dict:
    return {
        "user": str(user.pk),
        "name": "phone",
        "confirmed": "on",
        "key": "3132333435363738393031323334353637383930",
        "step": "30",
        "t0": "0",
        "digits": "6",
        "tolerance": "1",
        "drift": "0",
        "throttling_failure_count": "0",
    }


def test_an_administrator_cannot_enrol_a_device_for_someone_else(admin_client, staff_user):
    response = admin_client.post("/admin/otp_totp/totpdevice/add/", device_form(staff_user))

    assert response.status_code == 403
    assert not TOTPDevice.objects.exists()
    assert refusals() == ["only superusers enrol another's devices"]


def test_an_administrator_enrols_their_own_device(admin_client, administrator_user):
    response = admin_client.post("/admin/otp_totp/totpdevice/add/", device_form(administrator_user))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert TOTPDevice.objects.get().user == administrator_user


def test_an_administrator_cannot_read_or_remove_another_users_device(admin_client, staff_user):
    device = TOTPDevice.objects.create(user=staff_user, name="staff phone")

    for url in (
        f"/admin/otp_totp/totpdevice/{device.pk}/config/",
        f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/",
        f"/admin/otp_totp/totpdevice/{device.pk}/change/",
        f"/admin/otp_totp/totpdevice/{device.pk}/delete/",
    ):
        assert admin_client.get(url).status_code == 403, url
    assert admin_client.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert set(refusals()) == {"only superusers manage another's devices"}
    assert "staff phone" not in admin_client.get("/admin/otp_totp/totpdevice/").content.decode()


def test_an_administrator_cannot_widen_a_group(client, db):
    # Even an account that holds change_group may not change its own group or grant more
    # than it holds.
    helper = User.objects.create_user("helper", password="pw-helper-123", is_staff=True)
    group = roles.roles_ensure()[roles.OPERATORS]
    helper.groups.add(group)
    helper.user_permissions.add(
        Permission.objects.get(codename="change_group"),
        Permission.objects.get(codename="view_group"),
    )
    client.force_login(User.objects.get(pk=helper.pk))
    superpower = Permission.objects.get(codename="change_user")

    response = client.post(
        f"/admin/auth/group/{group.pk}/change/",
        {"name": group.name, "permissions": [str(superpower.pk)]},
    )

    assert response.status_code == 403
    assert not group.permissions.filter(pk=superpower.pk).exists()
    assert refusals() == ["a group the user belongs to or administers"]
