"""Audit of configuration and access changes, whatever screen or command made them.

Issuers and D1 clients (through their django-simple-history records), users, groups, group
and user permissions, TOTP devices, logins and logouts each append an AuditEntry. The request
(who, from where) comes from simple-history's middleware; a command has none. Switching a D1
client off revokes its bearer tokens; switching a user off deletes its read-API tokens.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django_otp.plugins.otp_totp.models import TOTPDevice
from oauth2_provider.models import get_access_token_model, get_application_model
from simple_history.models import HistoricalRecords
from simple_history.signals import post_create_historical_record

from tracking.models import D1Client, Issuer, ReadApiToken
from tracking.services.audit import audit_record

User = get_user_model()

_HISTORY_ACTIONS = {"+": "create", "~": "change", "-": "delete"}
_USER_FIELDS = ("username", "email", "is_active", "is_staff", "is_superuser", "password")


def _request():
    return getattr(HistoricalRecords.context, "request", None)


@receiver(post_create_historical_record)
def _audit_configuration(sender, instance, history_instance, **kwargs) -> None:
    if not isinstance(instance, (Issuer, D1Client)):
        return
    details: dict[str, Any] = {}
    previous = history_instance.prev_record
    if history_instance.history_type == "~" and previous is not None:
        delta = history_instance.diff_against(previous)
        details["changes"] = {c.field: [c.old, c.new] for c in delta.changes}
        if not details["changes"]:
            return
    prefix = "issuer" if isinstance(instance, Issuer) else "d1_client"
    action = _HISTORY_ACTIONS.get(history_instance.history_type, "change")
    audit_record(
        user=history_instance.history_user,
        action=f"{prefix}.{action}",
        target=instance,
        request=_request(),
        details=details,
    )


# ---------------------------------------------------------------------------- users and groups


@receiver(pre_save, sender=User)
def _remember_user(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    instance._audit_before = User.objects.filter(pk=instance.pk).values(*_USER_FIELDS).first()


@receiver(post_save, sender=User)
def _audit_user(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:
        return
    if created:
        flags = {f: getattr(instance, f) for f in ("is_active", "is_staff", "is_superuser")}
        audit_record(
            user=None, action="user.create", target=instance, request=_request(), details=flags
        )
        return
    before = getattr(instance, "_audit_before", None)
    instance._audit_before = None
    if not before:
        return
    changes = {
        field: (["(changed)", "(changed)"] if field == "password" else [old, new])
        for field, old in before.items()
        if (new := getattr(instance, field)) != old
    }
    if changes:
        audit_record(
            user=None,
            action="user.change",
            target=instance,
            request=_request(),
            details={"changes": changes},
        )


@receiver(post_delete, sender=User)
def _audit_user_delete(sender, instance, **kwargs) -> None:
    audit_record(
        user=None,
        action="user.delete",
        target=None,
        request=_request(),
        details={"username": instance.get_username(), "id": instance.pk},
    )


@receiver(post_save, sender=Group)
def _audit_group(sender, instance, created, raw=False, **kwargs) -> None:
    if not raw:
        audit_record(
            user=None,
            action="group.create" if created else "group.change",
            target=instance,
            request=_request(),
        )


@receiver(post_delete, sender=Group)
def _audit_group_delete(sender, instance, **kwargs) -> None:
    audit_record(
        user=None,
        action="group.delete",
        target=None,
        request=_request(),
        details={"name": str(instance)},
    )


def _labels(model, pks) -> list[str]:
    if model is Permission:
        rows = Permission.objects.filter(pk__in=pks).values_list(
            "content_type__app_label", "codename"
        )
        return sorted(f"{app}.{codename}" for app, codename in rows)
    return sorted(str(obj) for obj in model.objects.filter(pk__in=pks))


def _audit_membership(relation: str):
    def handler(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:
        if action not in ("post_add", "post_remove", "post_clear"):
            return
        if action != "post_clear" and not pk_set:
            return
        verb = {"post_add": "add", "post_remove": "remove", "post_clear": "clear"}[action]
        details = {"items": _labels(model, pk_set or [])}
        if reverse:
            # e.g. group.user_set.add(user): record it on the group, naming the users.
            details["reverse"] = True
        audit_record(
            user=None,
            action=f"{relation}.{verb}",
            target=instance,
            request=_request(),
            details=details,
        )

    return handler


_user_groups = _audit_membership("user.groups")
_user_permissions = _audit_membership("user.permissions")
_group_permissions = _audit_membership("group.permissions")
m2m_changed.connect(_user_groups, sender=User.groups.through, dispatch_uid="audit-user-groups")
m2m_changed.connect(
    _user_permissions, sender=User.user_permissions.through, dispatch_uid="audit-user-perms"
)
m2m_changed.connect(
    _group_permissions, sender=Group.permissions.through, dispatch_uid="audit-group-perms"
)


# ---------------------------------------------------------------------------- second factor, logins


@receiver(post_save, sender=TOTPDevice)
def _audit_device(sender, instance, created, raw=False, **kwargs) -> None:
    if raw or not created:
        return  # later saves only move the device's counters
    audit_record(
        user=None,
        action="otp_device.create",
        target=instance,
        request=_request(),
        details={"for_user": instance.user.get_username()},
    )


@receiver(post_delete, sender=TOTPDevice)
def _audit_device_delete(sender, instance, **kwargs) -> None:
    audit_record(
        user=None,
        action="otp_device.delete",
        target=None,
        request=_request(),
        details={"for_user": instance.user.get_username(), "name": instance.name},
    )


@receiver(user_logged_in)
def _audit_login(sender, request, user, **kwargs) -> None:
    # The two-factor step logs the session in again, now with the device that verified it.
    second_factor = getattr(user, "otp_device", None) is not None
    audit_record(
        user=user,
        action="login.otp" if second_factor else "login",
        target=None,
        request=request,
    )


@receiver(user_logged_out)
def _audit_logout(sender, request, user, **kwargs) -> None:
    audit_record(user=user, action="logout", target=None, request=request)


@receiver(post_delete, sender=D1Client)
def _delete_application(sender, instance, **kwargs) -> None:
    # A D1 client and its OAuth application go together (the application holds the secret).
    get_application_model().objects.filter(pk=instance.application_id).delete()


@receiver(post_save, sender=D1Client)
def _revoke_tokens_of_inactive_client(sender, instance, raw=False, **kwargs) -> None:
    # However a client is switched off (the form's tick box, the action, a shell), its tokens
    # go: ticking it on again must not bring them back. The only place they are revoked; the
    # count is left on the instance for `d1_client_deactivate` to report.
    if not raw and not instance.is_active:
        instance.tokens_revoked, _ = (
            get_access_token_model().objects.filter(application_id=instance.application_id).delete()
        )


@receiver(post_save, sender=User)
def _revoke_read_api_tokens_of_inactive_user(sender, instance, raw=False, **kwargs) -> None:
    # A user switched off loses its read-API tokens for good: switching it on again must not
    # bring back a token that may have leaked meanwhile.
    if raw or instance.is_active:
        return
    tokens = list(ReadApiToken.objects.filter(user=instance).only("pk", "prefix", "name"))
    if not tokens:
        return
    ReadApiToken.objects.filter(pk__in=[token.pk for token in tokens]).delete()
    audit_record(
        user=None,
        action="api_token.revoke",
        target=instance,
        request=_request(),
        details={
            "for_user": instance.get_username(),
            "reason": "user switched off",
            "tokens": [f"{token.prefix}… ({token.name})" for token in tokens],
        },
    )
