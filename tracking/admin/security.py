"""What every ModelAdmin of the portal uses to stay inside the trust boundary.

- `EvidenceAdminMixin`: events, deliveries and audit entries are evidence; nobody (superusers
  included) adds, changes or deletes them.
- Personal fields (PERSONAL_FIELDS) are masked for viewers by the columns and pages that show
  them (`tracking.admin.display`, `tracking.domain.masking.personal_mask`); the tests read those
  very pages.
- `OperatorPermissionsMixin` + `operator_action`: an admin action that only holders of the
  operator permission see and can run (the service it calls writes the audit entries).
- `require_permission`: the same check for custom admin views (reconcile now, ...).
- `ListLookupsMixin`: a list takes from its URL only the filters it offers, and nobody without
  the personal-data permission filters or searches on a personal field (each answer would
  confirm or rule out a guess of a masked value). `lookup_rule_everywhere` puts the same rule
  on the pages of other apps (OAuth applications, login attempts) the admin site shows.
- `IssuerGrantMixin`: a list and its pages hold only the rows of the issuers the user is
  granted (`tracking.services.issuer_grants`); any other row answers as a missing one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.admin import RelatedOnlyFieldListFilter
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.utils import unquote
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db.models.constants import LOOKUP_SEP
from django.http import Http404

from tracking.domain.masking import can_see_personal, personal_fields
from tracking.services import issuer_grants


class EvidenceAdminMixin:
    """Read-only for everyone: what D1 sent and what staff did is never edited or removed."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _search_field_name(search_field: str) -> str:
    return search_field.lstrip("^=@").split(LOOKUP_SEP, 1)[0]


def lookup_reaches_personal(model, lookup: str) -> bool:
    """Whether a URL lookup ("tracking_number__startswith", "order__shipment__x") reads a field
    PERSONAL_FIELDS marks, on `model` or on a model it follows a relation to."""
    for part in lookup.split(LOOKUP_SEP):
        if part in personal_fields(model):
            return True
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False
        if field.related_model is None:
            return False
        model = field.related_model
    return False


@functools.cache
def _offered_filters_only(changelist_class: type) -> type:
    class OfferedFiltersChangeList(changelist_class):
        """Refuse the URL parameters no list filter took (Django would apply them as lookups)."""

        def get_filters(self, request):
            result = super().get_filters(request)
            remaining = result[2]
            # The date drill-down turns its year/month/day into these two bounds.
            bounds = (
                {f"{self.date_hierarchy}__gte", f"{self.date_hierarchy}__lt"}
                if self.date_hierarchy
                else set()
            )
            refused = sorted(set(remaining) - bounds)
            if refused:
                raise DisallowedModelAdminLookup(f"Filtering by {refused[0]} not allowed")
            return result

    return OfferedFiltersChangeList


class ListLookupsMixin:
    """A list's URL filters only through its own list filters; personal fields not for viewers.

    Django applies any URL parameter that names a field as a lookup
    (`?tracking_number__startswith=1Z9`), so a viewer could confirm a masked value one guess at
    a time. Here a parameter that no list filter takes answers 400 (and is logged by
    `django.security`), a lookup or search that reaches a personal field is refused to users
    without the personal-data permission, and the CSV export, built on the same change list,
    obeys the same rule.
    """

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        user = getattr(request, "user", None)
        if not can_see_personal(user) and lookup_reaches_personal(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_changelist(self, request, **kwargs):
        return _offered_filters_only(super().get_changelist(request, **kwargs))

    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        if can_see_personal(request.user):
            return fields
        personal = personal_fields(self.model)
        return [f for f in fields if _search_field_name(f) not in personal]


# Other apps' pages whose rows belong to an issuer: D1's OAuth applications and their tokens.
THIRD_PARTY_ISSUER_PATHS = {
    "oauth2_provider.application": "d1_client__issuer",
    "oauth2_provider.accesstoken": "application__d1_client__issuer",
}


def lookup_rule_everywhere(site) -> None:
    """Give every ModelAdmin registered on `site` that lacks them the list lookup rule and,
    where its rows belong to an issuer, the grant rule.

    Third-party pages (django-oauth-toolkit's applications, axes' login attempts) would take
    `?client_secret__startswith=` as a lookup; with the rule it answers 400 as on our own pages.
    """
    for model, model_admin in site._registry.items():
        if isinstance(model_admin, ListLookupsMixin):
            continue
        cls = type(model_admin)
        mixins: tuple[type, ...] = (ListLookupsMixin,)
        attributes = {}
        if path := THIRD_PARTY_ISSUER_PATHS.get(model._meta.label_lower):
            mixins = (IssuerGrantMixin, ListLookupsMixin)
            attributes = {"issuer_path": path, "issuer_optional": True}
        model_admin.__class__ = type(cls.__name__, (*mixins, cls), attributes)


class IssuerGrantMixin:
    """Rows of the issuers the user is granted only; every other row is as if it did not exist.

    `issuer_path` leads from the model to its Issuer ("issuer", "order__issuer", "" for the
    Issuer itself; None: the model is not an issuer's). Where the issuer may be unknown,
    `issuer_id_in_path` names the field holding the issuer id D1 called with: such rows stay
    visible unless that id is a registered issuer outside the grant.
    """

    issuer_path: str | None = None
    issuer_id_in_path: str | None = None
    # Rows that belong to no issuer at all stay visible (not D1's OAuth applications).
    issuer_optional = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return self.granted(request, queryset)

    def get_list_filter(self, request):
        # A filter on a relation would offer every related row (another issuer's application
        # among them): offer only those the granted rows refer to.
        filters = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str) and self.issuer_path is not None:
                try:
                    field = self.model._meta.get_field(entry)
                except FieldDoesNotExist:
                    field = None
                if field is not None and field.is_relation:
                    entry = (entry, RelatedOnlyFieldListFilter)
            filters.append(entry)
        return filters

    def granted_object_or_404(self, request, object_id, queryset=None):
        """The row `object_id` of the list's queryset (or of `queryset`, narrowed to the grant);
        Http404 when it is outside the grant, missing, or not a primary key at all."""
        rows = self.get_queryset(request) if queryset is None else self.granted(request, queryset)
        try:
            found = rows.filter(pk=unquote(str(object_id))).first()
        except (ValueError, ValidationError):
            found = None
        if found is None:
            raise Http404
        return found

    def granted(self, request, queryset):
        """`queryset` narrowed to the rows of the issuers `request.user` is granted."""
        if self.issuer_path is None and not self.issuer_id_in_path:
            return queryset
        if self.issuer_id_in_path:
            return issuer_grants.visible_with_unknown_issuer(
                request.user,
                queryset,
                path=self.issuer_path,
                id_in_path=self.issuer_id_in_path,
            )
        return issuer_grants.visible_to(
            request.user, queryset, path=self.issuer_path, or_no_issuer=self.issuer_optional
        )


class GrantedHistoryMixin:
    """The edit history (django-simple-history) of a row outside the grant is not shown.

    Its history view falls back to the historical records when the row is not in the list's
    queryset; here it answers 404 first. Goes before SimpleHistoryAdmin in the bases.
    """

    def _granted_or_404(self, request, object_id) -> None:
        try:
            granted = self.get_queryset(request).filter(pk=unquote(object_id)).exists()
        except (ValueError, ValidationError):  # not a primary key at all
            granted = False
        if not granted:
            raise Http404

    def history_view(self, request, object_id, extra_context=None):
        self._granted_or_404(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        self._granted_or_404(request, object_id)
        return super().history_form_view(request, object_id, version_id, extra_context)


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


def operator_action(*, permission: str, description: str) -> Callable[[Callable], Callable]:
    """Make an admin action that needs `<permission>_<model>`.

    `permission` is the verb ("reconcile", "replay", "acknowledge"): Django hides the action
    from users without it (`allowed_permissions`, answered by OperatorPermissionsMixin) and it
    is checked again when it runs. The service the action calls writes the audit entries.
    """

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(modeladmin, request, queryset):
            opts = modeladmin.model._meta
            require_permission(request, f"{opts.app_label}.{permission}_{opts.model_name}")
            return func(modeladmin, request, queryset)

        wrapper.allowed_permissions = (permission,)
        wrapper.short_description = description
        return wrapper

    return decorator
