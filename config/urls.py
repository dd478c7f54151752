"""Top-level URLs: D1's webhook and token endpoint, the read API and its schema, the admin."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from tracking.api.token import D1TokenView
from tracking.api.webhook import CardNotificationView
from tracking.middleware.d1 import WEBHOOK_URL_NAME
from tracking.observability.health import liveness, readiness
from tracking.observability.views import metrics_view
from tracking.staff_views import OTPVerifyView

urlpatterns = [
    # observability: probes for load balancers and the Prometheus endpoint
    path("healthz", liveness, name="healthz"),
    path("readyz", readiness, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path(
        "notifications/d1/v2/issuers/<str:issuer_id>/cards",
        CardNotificationView.as_view(),
        name=WEBHOOK_URL_NAME,
    ),
    # trust: D1's token endpoint (SPEC §5.3) and the second step of a two-factor staff login.
    path("authz/d1/v1/oauth2/token", D1TokenView.as_view(), name="d1-token"),
    path("accounts/otp/", OTPVerifyView.as_view(), name="otp-verify"),
    path("api/v1/", include("tracking.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
