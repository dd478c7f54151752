"""Top-level URLs: D1's webhook and token endpoint, the read API and its schema, the admin."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from tracking.api.token import D1TokenView
from tracking.api.webhook import CardNotificationView
from tracking.staff_views import OTPVerifyView

urlpatterns = [
    path(
        "notifications/d1/v2/issuers/<str:issuer_id>/cards",
        CardNotificationView.as_view(),
        name="d1-card-notifications",
    ),
    # trust: D1's token endpoint (SPEC §5.3) and the second step of a two-factor staff login.
    path("authz/d1/v1/oauth2/token", D1TokenView.as_view(), name="d1-token"),
    path("accounts/otp/", OTPVerifyView.as_view(), name="otp-verify"),
    path("api/v1/", include("tracking.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
