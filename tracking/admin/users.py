"""Staff accounts, groups, TOTP devices and read-API tokens in the admin: no role may grow itself.

Only a superuser may:
- grant superuser status or the administrators group, or change a superuser's account;
- change another user's password or TOTP devices (either is enough to impersonate them);
- change their own groups or permissions (nobody else may);
- grant a permission they do not hold themselves, or change a group they belong to;
- grant an issuer they are not granted themselves, or change their own issuers.

A request that tries any of these anyway is refused (403) and audited as `access.refused`;
every change that goes through is audited by `tracking.signals`.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.contrib.admin import ActionLocation
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from tracking.admin.base import PortalModelAdmin
from tracking.models import Issuer, ReadApiToken
from tracking.services.api_tokens import api_token_create, api_token_delete
from tracking.services.audit import Actor, audit_record
from tracking.services.issuer_grants import issuers_granted, issuers_set, issuers_visible_to
from tracking.services.roles import ADMINISTRATORS

User = get_user_model()


def refuse(request, *, target, reason: str, **details) -> None:
    """Audit a refused attempt (committed whatever happens next) and raise 403."""
    audit_record(
        user=request.user,
        action="access.refused",
        target=target,
        request=request,
        details={"reason": reason, **details},
    )
    raise PermissionDenied(reason)


def _ids(values) -> set[str]:
    return {str(v) for v in values if str(v).strip()}


def _permission_labels(pks) -> set[str]:
    rows = Permission.objects.filter(pk__in=list(pks)).values_list(
        "content_type__app_label", "codename"
    )
    return {f"{app}.{codename}" for app, codename in rows}


def _without_delete_action(actions: dict, request) -> dict:
    # Bulk deletion skips the per-object checks below.
    if not request.user.is_superuser:
        actions.pop("delete_selected", None)
    return actions


# ---------------------------------------------------------------------------- users


admin.site.unregister(User)


class StaffUserChangeForm(UserChangeForm):
    """The user's page, with the issuers the user may see and act on."""

    issuers = forms.ModelMultipleChoiceField(
        queryset=Issuer.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("Issuers"),
        help_text=_(
            "The issuers whose orders, messages and calls to D1 this user sees and acts on. "
            "Superusers see every issuer."
        ),
    )


ISSUERS_FIELDSET = (_("Issuers"), {"fields": ["issuers"]})


@admin.register(User)
class StaffUserAdmin(UserAdmin, PortalModelAdmin):
    form = StaffUserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm

    def _may_change_issuers(self, request, obj) -> bool:
        # Nobody but a superuser changes their own issuers (no role may grow itself).
        return obj is not None and (request.user.is_superuser or obj.pk != request.user.pk)

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append(ISSUERS_FIELDSET)
        return fieldsets

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None or "issuers" not in form.base_fields:
            return form
        # Only issuers the changing user is granted are offered; others the user holds stay.
        field = form.base_fields["issuers"]
        field.queryset = issuers_visible_to(request.user)
        field.initial = list(obj.issuer_grants.values_list("issuer_id", flat=True))
        field.disabled = not self._may_change_issuers(request, obj)
        return form

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        obj = form.instance
        if not change or "issuers" not in form.cleaned_data:
            return
        if not self._may_change_issuers(request, obj):
            return
        offered = set(issuers_visible_to(request.user).values_list("pk", flat=True))
        kept = Issuer.objects.filter(grants__user=obj).exclude(pk__in=offered)
        issuers_set(
            user=obj,
            issuers=[*form.cleaned_data["issuers"], *kept],
            actor=Actor.of_request(request),
        )

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        return _without_delete_action(super().get_actions(request, action_location), request)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False  # viewed, not changed, by non-superusers
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        names = list(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return names
        names.append("is_superuser")
        if obj is not None and obj.pk == request.user.pk:
            names += ["groups", "user_permissions"]
        return names

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            if db_field.name == "groups":
                kwargs["queryset"] = Group.objects.exclude(name=ADMINISTRATORS)
            elif db_field.name == "user_permissions":
                kwargs["queryset"] = _grantable_permissions(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and not request.user.is_superuser:
            target = self.get_object(request, unquote(object_id)) if object_id else None
            self._refuse_growth(request, target)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _refuse_growth(self, request, target) -> None:
        """Refuse (and audit) a non-superuser's POST that would grow anyone's powers."""
        data = request.POST
        if target is not None and target.is_superuser:
            refuse(request, target=target, reason=_("only superusers change a superuser"))
        if data.get("is_superuser") not in (None, "", "off", "false"):
            refuse(request, target=target, reason=_("only superusers grant superuser status"))
        wanted_groups = _ids(data.getlist("groups"))
        wanted_perms = _ids(data.getlist("user_permissions"))
        if target is not None and target.pk == request.user.pk:
            current_groups = _ids(target.groups.values_list("pk", flat=True))
            current_perms = _ids(target.user_permissions.values_list("pk", flat=True))
            if ("groups" in data and wanted_groups != current_groups) or (
                "user_permissions" in data and wanted_perms != current_perms
            ):
                refuse(request, target=target, reason=_("nobody changes their own groups"))
            return
        administrators = Group.objects.filter(name=ADMINISTRATORS).values_list("pk", flat=True)
        already = _ids(target.groups.values_list("pk", flat=True)) if target is not None else set()
        if (wanted_groups - already) & _ids(administrators):
            refuse(
                request, target=target, reason=_("only superusers grant the administrators group")
            )
        held = request.user.get_all_permissions()
        beyond = sorted(_permission_labels(wanted_perms) - held)
        if beyond:
            refuse(
                request,
                target=target,
                reason=_("a permission the granting user does not hold"),
                permissions=beyond,
            )

    def user_change_password(self, request, id, form_url=""):
        target = self.get_object(request, unquote(id))
        if target is not None and target.pk != request.user.pk and not request.user.is_superuser:
            refuse(request, target=target, reason=_("only superusers change another's password"))
        return super().user_change_password(request, id, form_url)


def _grantable_permissions(user):
    held = user.get_all_permissions()
    wanted = {label.split(".", 1)[1] for label in held}
    candidates = Permission.objects.select_related("content_type").filter(codename__in=wanted)
    return candidates.filter(
        pk__in=[p.pk for p in candidates if f"{p.content_type.app_label}.{p.codename}" in held]
    )


# ---------------------------------------------------------------------------- groups


admin.site.unregister(Group)


@admin.register(Group)
class StaffGroupAdmin(GroupAdmin, PortalModelAdmin):
    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        return _without_delete_action(super().get_actions(request, action_location), request)

    def _may_change(self, request, group) -> bool:
        if request.user.is_superuser or group is None:
            return True
        return group.name != ADMINISTRATORS and not request.user.groups.filter(pk=group.pk).exists()

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may_change(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may_change(request, obj) and super().has_delete_permission(request, obj)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "permissions" and not request.user.is_superuser:
            kwargs["queryset"] = _grantable_permissions(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and not request.user.is_superuser:
            group = self.get_object(request, unquote(object_id)) if object_id else None
            if not self._may_change(request, group):
                refuse(
                    request, target=group, reason=_("a group the user belongs to or administers")
                )
            beyond = sorted(
                _permission_labels(_ids(request.POST.getlist("permissions")))
                - request.user.get_all_permissions()
            )
            if beyond:
                refuse(
                    request,
                    target=group,
                    reason=_("a permission the granting user does not hold"),
                    permissions=beyond,
                )
        return super().changeform_view(request, object_id, form_url, extra_context)


# ---------------------------------------------------------------------------- TOTP devices


admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class StaffTOTPDeviceAdmin(TOTPDeviceAdmin, PortalModelAdmin):
    """Non-superusers see and manage their own devices only (a device's key is a login)."""

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        return _without_delete_action(super().get_actions(request, action_location), request)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(user=request.user)

    def _own(self, request, device) -> bool:
        return request.user.is_superuser or device is None or device.user_id == request.user.pk

    def has_view_permission(self, request, obj=None) -> bool:
        return self._own(request, obj) and super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._own(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._own(request, obj) and super().has_delete_permission(request, obj)

    def _refuse_others(self, request, device, user_id: str | None) -> None:
        if request.user.is_superuser:
            return
        if device is not None and device.user_id != request.user.pk:
            refuse(request, target=device, reason=_("only superusers manage another's devices"))
        if user_id not in (None, "") and str(user_id) != str(request.user.pk):
            refuse(request, target=device, reason=_("only superusers enrol another's devices"))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        device = TOTPDevice.objects.filter(pk=unquote(object_id)).first() if object_id else None
        user_id = request.POST.get("user") if request.method == "POST" else None
        if request.method == "POST" or device is not None:
            self._refuse_others(request, device, user_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._refuse_others(request, TOTPDevice.objects.filter(pk=unquote(object_id)).first(), None)
        return super().delete_view(request, object_id, extra_context)

    def config_view(self, request, pk):
        self._refuse_others(request, TOTPDevice.objects.filter(pk=pk).first(), None)
        return super().config_view(request, pk)

    def qrcode_view(self, request, pk):
        self._refuse_others(request, TOTPDevice.objects.filter(pk=pk).first(), None)
        return super().qrcode_view(request, pk)


# ---------------------------------------------------------------------------- read-API tokens


class ReadApiTokenAddForm(forms.ModelForm):
    days = forms.IntegerField(
        min_value=1, max_value=3650, help_text=_("Days until the token expires.")
    )

    issuers = forms.ModelMultipleChoiceField(
        queryset=Issuer.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("Issuers"),
        help_text=_(
            "Only these issuers (each granted to the user); none ticked: all of the user's."
        ),
    )

    class Meta:
        model = ReadApiToken
        fields = ["user", "name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from django.conf import settings

        self.fields["days"].initial = settings.READ_API_TOKEN_LIFETIME_DAYS

    def clean(self):
        cleaned = super().clean()
        owner, issuers = cleaned.get("user"), cleaned.get("issuers")
        if owner is not None and issuers:
            granted = issuers_granted(owner)
            outside = sorted(i.issuer_id for i in issuers if i.issuer_id not in granted)
            if outside:
                self.add_error(
                    "issuers",
                    _("%(user)s is not granted issuer(s) %(issuers)s.")
                    % {"user": owner.get_username(), "issuers": ", ".join(outside)},
                )
        return cleaned


@admin.register(ReadApiToken)
class ReadApiTokenAdmin(PortalModelAdmin):
    """Tokens are made here (shown once), looked at, and deleted to revoke them."""

    list_display = ["prefix", "name", "user", "created_at", "expires_at"]
    list_filter = [("expires_at", admin.DateFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["=prefix", "name", "=user__username"]
    readonly_fields = ["prefix", "name", "user", "created_at", "expires_at"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ReadApiTokenAddForm
        form = super().get_form(request, obj, **kwargs)
        if obj is None:
            form.base_fields["issuers"].queryset = issuers_visible_to(request.user)
        return form

    def get_fields(self, request, obj=None):
        return ["user", "name", "days", "issuers"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            users = User.objects.filter(is_active=True)
            # A token acts as its user: only superusers make one for a superuser.
            if not request.user.is_superuser:
                users = users.filter(is_superuser=False)
            kwargs["queryset"] = users
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and not request.user.is_superuser and object_id is None:
            owner = User.objects.filter(pk=request.POST.get("user") or None).first()
            if owner is not None and owner.is_superuser:
                refuse(request, target=owner, reason=_("only superusers make a superuser's token"))
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        owner = form.cleaned_data["user"]
        issued = api_token_create(
            user=owner,
            name=form.cleaned_data["name"],
            lifetime=timedelta(days=form.cleaned_data["days"]),
            actor=Actor.of_request(request),
            issuer_ids=[issuer.issuer_id for issuer in form.cleaned_data.get("issuers") or []],
        )
        obj.pk = issued.token.pk
        obj.created_at = issued.token.created_at
        request._issued_api_token = issued

    def delete_model(self, request, obj) -> None:
        api_token_delete(token=obj, actor=Actor.of_request(request))

    def delete_queryset(self, request, queryset) -> None:
        for token in queryset.select_related("user"):
            self.delete_model(request, token)

    def response_add(self, request, obj, post_url_continue=None):
        issued = getattr(request, "_issued_api_token", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered once, never stored: not in a message (cookie), not in the database.
        return TemplateResponse(
            request,
            "tracking/api_token_created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Read-API token created"),
                "issued": issued,
                "now": timezone.now(),
            },
        )
