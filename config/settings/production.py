"""Production settings: secrets from the environment with no defaults, strict transport."""

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from config.settings.base import *  # noqa: F403
from config.settings.base import LOG_LEVEL, env
from tracking.observability.logs import logging_settings


def _required(name: str) -> str:
    value = env(name, default="")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in production.")
    return value


DEBUG = False
SECRET_KEY = _required("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = _required("DJANGO_ALLOWED_HOSTS").split(",")
_required("DATABASE_URL")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# observability: JSON log lines unless told otherwise.
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = logging_settings(log_format=LOG_FORMAT, level=LOG_LEVEL)

# ---------------------------------------------------------------------------- trust boundary
# The strict setting by default: D1 must present a client certificate (through the proxy) and a
# bearer token from our token endpoint, and staff must verify a TOTP device.
D1_WEBHOOK_REQUIRE_BEARER = env.bool("D1_WEBHOOK_REQUIRE_BEARER", default=True)
D1_REQUIRE_CLIENT_CERT = env.bool("D1_REQUIRE_CLIENT_CERT", default=True)
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=True)
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 3600)
CSRF_COOKIE_HTTPONLY = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_REFERRER_POLICY = "same-origin"
# Nothing is loaded from other origins, and no page has an inline script or event handler, so
# scripts need no 'unsafe-inline' (tests/security/test_csp_browser.py visits every admin page
# with this policy and finds no violation). The admin theme's Alpine.js evaluates its x-data
# and x-on expressions with `new Function`, which only 'unsafe-eval' allows; without it menus,
# tabs, filters and dark mode stop working. Styles: the theme and Django's admin set style
# attributes in their templates, hence 'unsafe-inline' for styles only.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.UNSAFE_EVAL],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Outbound events go to the issuer's systems over https only, whatever the environment says.
EVENT_ENDPOINT_REQUIRE_HTTPS = True
