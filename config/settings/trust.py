"""Settings of the trust boundary: how D1 proves it is D1, who on staff may do what, data care.

The README's "Production access" section explains these together. `config.settings.base` reads
this module after the `.env` file, so every environment sees these as its own settings.
"""

from datetime import timedelta

import environ

env = environ.Env()

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# D1 → us OAuth (SPEC §5.3): D1 gets a bearer token from our token endpoint with
# client_credentials and HTTP Basic; each D1 client is bound to one issuer.
D1_WEBHOOK_REQUIRE_BEARER = env.bool("D1_WEBHOOK_REQUIRE_BEARER", default=False)
D1_TOKEN_LIFETIME_SECONDS = env.int("D1_TOKEN_LIFETIME_SECONDS", default=900)
# Each web process remembers a token it found valid for this long (0 = look up every POST): a
# revoked or expired token is refused at most this many seconds later.
D1_TOKEN_CHECK_CACHE_SECONDS = env.int("D1_TOKEN_CHECK_CACHE_SECONDS", default=5)
# Each web process remembers an active issuer it served for this long (0 = look up every POST):
# one switched off in another process is refused at most this many seconds later.
D1_ISSUER_CACHE_SECONDS = env.int("D1_ISSUER_CACHE_SECONDS", default=5)
D1_TOKEN_SCOPE = env("D1_TOKEN_SCOPE", default="notifications")
# Named so that D1Client's link to the application migrates as a swappable dependency.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": D1_TOKEN_LIFETIME_SECONDS,
    "SCOPES": {D1_TOKEN_SCOPE: "Post card-operation notifications"},
    "DEFAULT_SCOPES": [D1_TOKEN_SCOPE],
    "OAUTH2_VALIDATOR_CLASS": "tracking.d1.access.D1OAuth2Validator",
    # Only client_credentials is used; every RFC 9700 gate on (tokens are kept as checksums).
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # Client secrets are 128 random characters: a keyed HMAC is as strong as PBKDF2 for them
    # and costs microseconds, so wrong secrets cannot be used to slow the webhook down.
    "CLIENT_SECRET_HASHER": "d1_hmac_sha256",
}

# mTLS ends at the reverse proxy (docs/nginx-mtls.conf), which forwards the verified client
# certificate's subject in this header. The header is believed only from D1_TRUSTED_PROXIES.
D1_CLIENT_CERT_HEADER = env("D1_CLIENT_CERT_HEADER", default="X-SSL-Client-S-DN")
D1_REQUIRE_CLIENT_CERT = env.bool("D1_REQUIRE_CLIENT_CERT", default=False)
D1_TRUSTED_PROXIES = env.list("D1_TRUSTED_PROXIES", default=[])
# When set, only these certificate subjects are accepted (exact match); empty: any verified one.
D1_ALLOWED_CLIENT_SUBJECTS = env.list("D1_ALLOWED_CLIENT_SUBJECTS", default=[])

# Rate limits per client address, in fixed windows: token requests, and failed webhook
# authentications (after which the address is refused 429 until the window ends).
D1_RATE_LIMIT_WINDOW_SECONDS = env.int("D1_RATE_LIMIT_WINDOW_SECONDS", default=60)
D1_TOKEN_RATE_LIMIT = env.int("D1_TOKEN_RATE_LIMIT", default=30)
D1_AUTH_FAILURE_LIMIT = env.int("D1_AUTH_FAILURE_LIMIT", default=20)

# Staff login: lockout after repeated failures (django-axes), per username and address.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "tracking.d1.access.client_address"
AXES_VERBOSE = False
# Staff sessions must be verified with a TOTP device (django-otp) before anything else.
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=False)
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="D1 card-order portal")

# Read-API tokens expire after this many days (a new one is made with create_api_token).
READ_API_TOKEN_LIFETIME_DAYS = env.int("READ_API_TOKEN_LIFETIME_DAYS", default=90)

# Content security policy (Django's own middleware); production.py switches it on.
SECURE_CSP: dict = {}

# Data care: model fields masked for staff without tracking.view_personal_fields
# ("app_label.Model.field"), and item fields kept as identifiers, never masked, besides
# tracking.domain.masking.IDENTIFIER_FIELDS (see docs/security.md).
PERSONAL_FIELDS = env.list(
    "PERSONAL_FIELDS",
    default=[
        "tracking.CardOrder.tracking_number",
        "tracking.CardOrder.tracking_url",
        "tracking.CardOrder.shipment",
        "tracking.CardOrder.shipment_message",
        "tracking.OperationEvent.payload",
        "tracking.NotificationDelivery.body",
        # The order as sent to the issuer's systems, shipment included.
        "tracking.OutboundEvent.payload",
    ],
)
PAN_SCAN_EXEMPT_FIELDS = env.list(
    "PAN_SCAN_EXEMPT_FIELDS",
    # operationId is D1's own generated id, never card data.
    default=["operationId", "details.shipment.trackingNumber", "details.shipment.trackingUrl"],
)
