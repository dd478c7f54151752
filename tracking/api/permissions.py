"""Who may use the read API: the same model permissions as the admin, `view_*` included."""

from __future__ import annotations

from rest_framework.permissions import BasePermission, DjangoModelPermissions

from tracking.api.authentication import is_read_api_token

_VIEW = ["%(app_label)s.view_%(model_name)s"]


class ModelViewPermissions(DjangoModelPermissions):
    """Reading needs the model's view permission (viewers, operators, administrators).

    DRF's DjangoModelPermissions lets any authenticated user read; staff roles here are
    narrower. A view without a model (none exists today) is left to staff members only.
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": _VIEW,
        "HEAD": _VIEW,
        "OPTIONS": _VIEW,
    }

    def has_permission(self, request, view) -> bool:
        if getattr(view, "queryset", None) is None and not hasattr(view, "get_queryset"):
            user = request.user
            return bool(user and user.is_authenticated and user.is_staff)
        return super().has_permission(request, view)


class StaffOrIntegration(BasePermission):
    """The API schema: staff sessions and read-API tokens; not any signed-in account."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        return bool(user.is_staff or is_read_api_token(request.auth))
