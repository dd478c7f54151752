"""What every ModelAdmin of the portal uses to stay inside the trust boundary.

- `EvidenceAdminMixin`: events, deliveries and audit entries are evidence; nobody (superusers
  included) adds, changes or deletes them.
- `PersonalFieldsMaskMixin`: the fields PERSONAL_FIELDS names are shown masked to staff without
  `tracking.view_personal_fields` (viewers), in lists, forms and inlines.
- `OperatorPermissionsMixin` + `audited_action`: an admin action that only holders of the
  operator permission see and can run, and that appends one audit entry per object.
- `require_permission`: the same check for custom admin views (reconcile now, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied

from tracking.data_care import PERSONAL_MASK, can_see_personal, personal_fields
from tracking.services.audit import audit_record_many

MASKED_PREFIX = "masked__"


class EvidenceAdminMixin:
    """Read-only for everyone: what D1 sent and what staff did is never edited or removed."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PersonalFieldsMaskMixin:
    """Swap personal fields for masked read-only stand-ins when the user may not see them.

    Works for ModelAdmin and InlineModelAdmin: list columns, fields, fieldsets and read-only
    fields named in PERSONAL_FIELDS become `masked__<field>`, which shows PERSONAL_MASK (or "-"
    when empty). Users with the permission see the page unchanged.
    """

    def _masked_names(self, request) -> frozenset[str]:
        if can_see_personal(request.user):
            return frozenset()
        return personal_fields(self.model)

    def _mask_names(self, request, names: Sequence[Any]) -> list[Any]:
        personal = self._masked_names(request)
        if not personal:
            return list(names)
        masked = []
        for name in names:
            if isinstance(name, (list, tuple)):  # a row of fields on one line
                masked.append(type(name)(self._mask_names(request, name)))
            elif isinstance(name, str) and name in personal:
                masked.append(MASKED_PREFIX + name)
            else:
                masked.append(name)
        return masked

    def get_list_display(self, request):
        return self._mask_names(request, super().get_list_display(request))

    def get_fields(self, request, obj=None):
        return self._mask_names(request, super().get_fields(request, obj))

    def get_fieldsets(self, request, obj=None):
        return [
            (title, {**options, "fields": self._mask_names(request, options.get("fields", ()))})
            for title, options in super().get_fieldsets(request, obj)
        ]

    def get_readonly_fields(self, request, obj=None):
        names = self._mask_names(request, super().get_readonly_fields(request, obj))
        extra = [MASKED_PREFIX + n for n in sorted(self._masked_names(request))]
        return [*names, *(n for n in extra if n not in names)]

    def __getattr__(self, name: str):
        if not name.startswith(MASKED_PREFIX):
            raise AttributeError(name)
        field_name = name[len(MASKED_PREFIX) :]
        try:
            label = self.model._meta.get_field(field_name).verbose_name
        except Exception:
            label = field_name

        def display(obj) -> str:
            value = getattr(obj, field_name, None)
            return "-" if value in (None, "", [], {}) else PERSONAL_MASK

        display.short_description = label
        return display


class OperatorPermissionsMixin:
    """`has_<verb>_permission` for the operator permissions of the admin's model."""

    def _has_model_perm(self, request, verb: str) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.{verb}_{opts.model_name}")

    def has_reconcile_permission(self, request, obj=None) -> bool:
        return self._has_model_perm(request, "reconcile")

    def has_replay_permission(self, request, obj=None) -> bool:
        return self._has_model_perm(request, "replay")

    def has_acknowledge_permission(self, request, obj=None) -> bool:
        return self._has_model_perm(request, "acknowledge")


def require_permission(request, perm: str) -> None:
    """Raise PermissionDenied (403) unless the user holds `perm` ("tracking.replay_cardorder")."""
    if not request.user.has_perm(perm):
        raise PermissionDenied


def audited_action(
    *, permission: str, action: str, description: str
) -> Callable[[Callable], Callable]:
    """Make an admin action that needs `<permission>_<model>` and audits every object.

    `permission` is the verb ("reconcile", "replay", "acknowledge"): Django hides the action
    from users without it (`allowed_permissions`, answered by OperatorPermissionsMixin) and it
    is checked again when it runs. After the action returns, one AuditEntry per selected
    object is appended with `action` (e.g. "order.reconcile").
    """

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(modeladmin, request, queryset):
            opts = modeladmin.model._meta
            require_permission(request, f"{opts.app_label}.{permission}_{opts.model_name}")
            targets = list(queryset)
            result = func(modeladmin, request, queryset)
            audit_record_many(user=request.user, action=action, targets=targets, request=request)
            return result

        wrapper.allowed_permissions = (permission,)
        wrapper.short_description = description
        return wrapper

    return decorator


def base_model_admin() -> type:
    """The ModelAdmin base the rest of the admin uses: django-unfold's when it is installed."""
    from django.apps import apps
    from django.contrib import admin

    if apps.is_installed("unfold"):
        from unfold.admin import ModelAdmin

        return ModelAdmin
    return admin.ModelAdmin
