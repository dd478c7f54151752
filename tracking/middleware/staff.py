"""Staff pages: two-factor sessions, and each user's own language and time zone."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone, translation

from tracking.middleware.d1 import WEBHOOK_PREFIX


class StaffOTPRequiredMiddleware:
    """With ADMIN_REQUIRE_OTP, a staff session counts only after a TOTP device verified it.

    A session that has passed the password but not the second factor is sent to the
    verification page (HTML) or refused 403 (the read API), so a stolen password alone opens
    neither the admin nor the API. D1's endpoints and the health checks never use sessions.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.ADMIN_REQUIRE_OTP:
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or user.is_verified():
            return self.get_response(request)
        path = request.path_info
        if path in _exempt_paths() or path.startswith(_EXEMPT_PREFIXES):
            return self.get_response(request)
        if path.startswith("/api/"):
            return JsonResponse({"detail": "Two-factor verification is required."}, status=403)
        return redirect_to_login(request.get_full_path(), reverse("otp-verify"))


_EXEMPT_PREFIXES = (WEBHOOK_PREFIX, "/authz/", "/static/", "/healthz", "/readyz")


def _exempt_paths() -> set[str]:
    return {reverse("otp-verify"), reverse("admin:login"), reverse("admin:logout")}


class StaffPreferenceMiddleware:
    """Read every page in the user's own language and time zone (`services.preferences`).

    After LocaleMiddleware (the browser's language) and the session: a language the user chose
    wins over the browser's; the zone is theirs, else the site's for their language.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from tracking.services.preferences import language_and_zone

        language, zone = language_and_zone(request)
        if language != getattr(request, "LANGUAGE_CODE", None):
            translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        timezone.activate(zone)
        try:
            response = self.get_response(request)
        finally:
            timezone.deactivate()
        # LocaleMiddleware only sets the header when it is missing: this is the page's language.
        response.headers["Content-Language"] = request.LANGUAGE_CODE
        if response.streaming and not response.is_async:
            # An export is written after this returns: each chunk in the user's zone and words.
            response.streaming_content = _in_language_and_zone(
                response.streaming_content, language=request.LANGUAGE_CODE, zone=zone
            )
        return response


def _in_language_and_zone(chunks, *, language: str, zone):
    chunks = iter(chunks)
    while True:
        with timezone.override(zone), translation.override(language):
            try:
                chunk = next(chunks)
            except StopIteration:
                return
        yield chunk
