"""Settings shared by every environment; each value comes from the environment via django-environ.

With no environment at all the portal runs embedded: SQLite in WAL mode and Celery's filesystem
broker in the ignored `.local/` folder. `DATABASE_URL`, `CELERY_BROKER_URL` and `CACHE_URL`
switch to PostgreSQL, Redis or RabbitMQ.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.utils.translation import gettext_lazy as _

from tracking.observability.logs import logging_settings

BASE_DIR = Path(__file__).resolve().parent.parent.parent
LOCAL_DIR = BASE_DIR / ".local"

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

# ---------------------------------------------------------------------------- core
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
# Earlier keys, still accepted while sessions and D1 client secret hashes move to the new one.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# The zone times are stored and scheduled in; staff see theirs (PORTAL_TIME_ZONE below).
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_TZ = True
USE_I18N = True
# The back office speaks Japanese and English: each user's choice (their preferences page),
# else the browser's Accept-Language, else the site's language.
LANGUAGE_CODE = env("PORTAL_LANGUAGE", default="en")
LANGUAGES = [("ja", "日本語"), ("en", "English")]
# The catalogue's source (.po) and its compiled form (.mo) are both kept in the repository, so a
# machine without gettext still shows Japanese (README, "Languages and time zones").
LOCALE_PATHS = [BASE_DIR / "locale"]
# The zone a user sees when they chose none: this one when set, else the zone of their language
# (Japanese: Asia/Tokyo), else TIME_ZONE.
PORTAL_TIME_ZONE = env("PORTAL_TIME_ZONE", default="")
PORTAL_LANGUAGE_TIME_ZONES = {"ja": "Asia/Tokyo"}
# Dates per language, always with their zone (config/formats): 2026年12月4日 21:30 JST,
# 4 Dec 2026 21:30 JST.
FORMAT_MODULE_PATH = ["config.formats"]
# Seconds between the dashboard's own refreshes (staff can pause them).
DASHBOARD_REFRESH_SECONDS = env.int("DASHBOARD_REFRESH_SECONDS", default=30)
# The dashboard's figures are shared by every viewer for this long (0: read on every view).
DASHBOARD_CACHE_SECONDS = env.int("DASHBOARD_CACHE_SECONDS", default=10)
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "unfold",  # the admin's theme; before django.contrib.admin so its templates win
    "unfold.contrib.filters",  # the theme's list filters (drop-downs, date ranges)
    "unfold.contrib.simple_history",  # the theme's look for edit history
    "django.contrib.admin",  # the back office
    "django.contrib.auth",  # staff accounts, groups and permissions (the roles)
    "django.contrib.contenttypes",
    "django.contrib.sessions",  # staff sign-in
    "django.contrib.messages",  # what an admin action says it did
    "django.contrib.staticfiles",
    "rest_framework",  # the webhook, the read API and registration
    "django_filters",  # the read API's filters
    "drf_spectacular",  # the OpenAPI schema
    "tracking",  # the portal: models, services, admin, API
    "django_structlog",  # one request id on every log line
    "tracking.observability",  # health probes, metrics, alerts
    "oauth2_provider",  # trust: D1's OAuth client credentials (its bearer tokens)
    "simple_history",  # trust: the edit history of issuers and D1 clients
    "axes",  # trust: the staff login lockout
    "django_otp",  # trust: staff second factor
    "django_otp.plugins.otp_totp",  # trust: TOTP devices
]

# In the order a request meets them (the response goes back up).
MIDDLEWARE = [
    # observability: time the webhook, then bind one request id for every log line
    "tracking.middleware.d1.WebhookTimingMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "django.middleware.security.SecurityMiddleware",  # HTTPS redirect, HSTS, nosniff
    "django.middleware.csp.ContentSecurityPolicyMiddleware",  # the admin's CSP header
    # trust: the proxy's client-certificate header becomes D1's identity (or is refused)
    "tracking.middleware.d1.D1ClientCertificateMiddleware",
    # perf: D1's webhook POSTs skip everything below that is for staff (sessions, CSRF, staff
    # login and OTP, lockout). Safe under concurrency because ingest takes its row locks in
    # one order (tracking/intake/ingest.py); WEBHOOK_FAST_PATH=false turns it off.
    *(
        ["tracking.middleware.d1.WebhookFastPathMiddleware"]
        if env.bool("WEBHOOK_FAST_PATH", default=True)
        else []
    ),
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files without a web server
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the browser's language (Accept-Language)
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # the user's own language and time zone, over the browser's (tracking/services/preferences.py)
    "tracking.middleware.staff.StaffPreferenceMiddleware",
    "django_otp.middleware.OTPMiddleware",  # trust: knows whether staff passed TOTP
    "django.contrib.auth.middleware.LoginRequiredMiddleware",  # trust: nothing is public by default
    "tracking.middleware.staff.StaffOTPRequiredMiddleware",  # trust: no admin page without TOTP
    "simple_history.middleware.HistoryRequestMiddleware",  # who made each recorded edit
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # trust: the login lockout; axes wants to be last
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# ---------------------------------------------------------------------------- database
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{LOCAL_DIR / 'portal.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN, so
    # concurrent writers queue on busy_timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # perf: PostgreSQL's JIT compiles any query it estimates costly; for the admin's counts
    # over a million orders that took 60 of their 70 ms. Our queries are short: no JIT.
    if not env.bool("DATABASE_JIT", default=False):
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
    # perf: server-side prepared statements (psycopg prepares a statement from its
    # DATABASE_PREPARE_THRESHOLD-th run on a connection). Off by default: behind PgBouncer in
    # transaction mode they need its prepared-statement support; docs/benchmarks.md has the gain.
    if env.bool("DATABASE_POOL", default=False):
        # psycopg's pool instead of one persistent connection per process (Django wants
        # CONN_MAX_AGE 0 with it); pays with threaded or async workers, not sync ones.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = True
    if env.bool("DATABASE_SERVER_SIDE_BINDING", default=False):
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {
                "server_side_binding": True,
                "prepare_threshold": env.int("DATABASE_PREPARE_THRESHOLD", default=2),
            }
        )

# ---------------------------------------------------------------------------- cache
# Shared across processes even on the embedded default, because the D1 access token is cached
# here for the web, worker and beat processes alike.
CACHES = {"default": env.cache("CACHE_URL", default=f"filecache://{LOCAL_DIR / 'cache'}")}

# ---------------------------------------------------------------------------- auth
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
# Where a login without ?next lands (Django's default, /accounts/profile/, does not exist here).
LOGIN_REDIRECT_URL = "admin:index"
# trust: D1 client secrets are checked with a fast keyed hash (tracking.d1.access), user
# passwords with Django's default PBKDF2.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "tracking.d1.access.D1ClientSecretHasher",
]

# ---------------------------------------------------------------------------- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # trust: tokens kept as digests, with an expiry (tracking.ReadApiToken); first, so that
        # a refused token answers 401 with its WWW-Authenticate challenge.
        "tracking.api.authentication.ReadApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # trust: the model permissions the admin uses (view_* to read); tracking/api/permissions.py
    "DEFAULT_PERMISSION_CLASSES": ["tracking.api.permissions.ModelViewPermissions"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "D1 card-order tracking portal",
    "DESCRIPTION": "D1's notification webhook and the read API over derived card-order state.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # trust: the schema is for staff and integrations (read-API tokens) only.
    "SERVE_PERMISSIONS": ["tracking.api.permissions.StaffOrIntegration"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tracking.api.d1_schema.add_token_endpoint",
    ],
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "d1ClientCredentials": {"type": "http", "scheme": "basic"},
        }
    },
}

# ---------------------------------------------------------------------------- webhook
# Bodies above this size are answered 413 before they are parsed.
D1_WEBHOOK_MAX_BODY_BYTES = env.int("D1_WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# The per-call cap D1 agrees at onboarding; more operations in one POST are answered 400.
D1_WEBHOOK_MAX_OPERATIONS = env.int("D1_WEBHOOK_MAX_OPERATIONS", default=1000)
# How much of a refused body is kept for staff: by default all of it (D1 does not retry a 400).
D1_REJECTED_BODY_KEEP_BYTES = env.int(
    "D1_REJECTED_BODY_KEEP_BYTES", default=D1_WEBHOOK_MAX_BODY_BYTES
)
# Accepted bodies are kept too (same cap), written from their items as stored (identifiers as
# sent, text masked), for the D1 message page: the body and every order it named, duplicates
# included. Off, an accepted message links only the orders of the items it brought first.
D1_KEEP_ACCEPTED_BODIES = env.bool("D1_KEEP_ACCEPTED_BODIES", default=True)
# The webhook stores; the projector folds (tracking/intake/projector.py). It is woken when a
# delivery commits. "celery" queues its task (at most one queued at a time, for this many
# seconds) and answers at once: readers see the fold within 1 s at p99 at a steady peak of
# 2,000 items/s on two cores (docs/benchmarks.md), and the webhook takes 2.8 times as many
# single items a second as with "inline", which folds what each POST stored in the request
# right after its commit (the 204's order reads folded). PostgreSQL runs "celery"; SQLite (the
# embedded default) runs "inline": it has one writer at a time, so a projector beside the web
# process would only queue behind it, and its file broker is polled once a second. A beat sweep
# catches what a wake-up missed.
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
INGEST_FOLD = env("INGEST_FOLD", default="inline" if _SQLITE else "celery")
# Orders per transaction: a smaller set commits (shows) sooner; a larger one costs less per order.
INGEST_FOLD_BATCH = env.int("INGEST_FOLD_BATCH", default=200)
INGEST_FOLD_QUEUED_TTL = env.int("INGEST_FOLD_QUEUED_TTL", default=5)
# Seconds a queued run waits before it starts: the deliveries of that time fold in one set.
INGEST_FOLD_DELAY = env.float("INGEST_FOLD_DELAY", default=0.1)
INGEST_FOLD_SWEEP_INTERVAL = env.float("INGEST_FOLD_SWEEP_INTERVAL", default=5.0)

# ---------------------------------------------------------------------------- D1 on-demand API
D1_API_BASE_URL = env("D1_API_BASE_URL", default="https://api.d1.thalescloud.io/banking/v1")
D1_TOKEN_URL = env("D1_TOKEN_URL", default="https://api.d1.thalescloud.io/authz/v1/oauth2/token")
D1_KEY_ID = env("D1_KEY_ID", default="")
D1_PRIVATE_KEY_PATH = env("D1_PRIVATE_KEY_PATH", default="")
D1_CLIENT_CERT = env("D1_CLIENT_CERT", default="")
D1_CLIENT_KEY = env("D1_CLIENT_KEY", default="")
D1_CA_BUNDLE = env("D1_CA_BUNDLE", default="")
D1_CONNECT_TIMEOUT = env.float("D1_CONNECT_TIMEOUT", default=3.05)
D1_READ_TIMEOUT = env.float("D1_READ_TIMEOUT", default=10.0)
D1_MAX_RETRIES = env.int("D1_MAX_RETRIES", default=3)
D1_BACKOFF_BASE = env.float("D1_BACKOFF_BASE", default=0.5)
D1_BACKOFF_CAP = env.float("D1_BACKOFF_CAP", default=8.0)
D1_RETRY_AFTER_MAX = env.float("D1_RETRY_AFTER_MAX", default=30.0)
D1_ISSUER_OVERRIDES = env.json("D1_ISSUER_OVERRIDES", default={})
# The folder of per-issuer private keys: an issuer with a D1 key id and no key in the settings
# uses <D1_KEY_DIR>/<key id>.pem. Key locations are never taken from the database.
D1_KEY_DIR = env("D1_KEY_DIR", default="")

# ---------------------------------------------------------------------------- Celery
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Reconciliation: workers publish while they consume, which the stock transport cannot take.
    CELERY_BROKER_TRANSPORT = "config.broker:AtomicFilesystemTransport"
    _broker_dir = LOCAL_DIR / "broker"
    for _folder in ("out", "processed"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # Exchange tables too, so the broker leaves nothing in the working directory.
        "control_folder": str(_broker_dir / "control"),
    }
else:
    # Tasks must finish (and be acked) well inside the visibility timeout, or Redis redelivers.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# A worker that survives a Redis restart with tasks in flight (config/broker.py).
CELERY_WORKER_CONSUMER = "config.broker:BrokerLossConsumer"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(LOCAL_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {}
# One queue name per deployment; tests give their worker a queue of its own.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="celery")

# ---------------------------------------------------------------------------- reconciliation
# How long an order may stay in a stage before it is worth asking D1 (non-terminal stages).
RECONCILE_STAGE_THRESHOLDS = env.json(
    "RECONCILE_STAGE_THRESHOLDS",
    default={
        "CARD_PROD_REQUESTED": 3600,
        "DATA_PREPARED": 6 * 3600,
        "CARD_PROD_READY": 24 * 3600,
        "CARD_PROD_ONGOING": 24 * 3600,
        "CARD_PROD_DONE": 24 * 3600,
    },
)
RECONCILE_DEFAULT_STAGE_THRESHOLD = timedelta(
    seconds=env.int("RECONCILE_DEFAULT_STAGE_THRESHOLD", default=24 * 3600)
)
# An order still before shipment this long after its dueDate is asked about.
RECONCILE_DUE_DATE_GRACE = timedelta(
    seconds=env.int("RECONCILE_DUE_DATE_GRACE", default=2 * 24 * 3600)
)
# Shipped orders whose carrier has not reported delivery are asked at this slower cadence,
# until delivery or until this long after shipment.
RECONCILE_SHIPPED_INTERVAL = timedelta(
    seconds=env.int("RECONCILE_SHIPPED_INTERVAL", default=12 * 3600)
)
RECONCILE_SHIPPED_MAX_AGE = timedelta(
    seconds=env.int("RECONCILE_SHIPPED_MAX_AGE", default=30 * 24 * 3600)
)
# Per order, when D1 keeps saying the same or keeps failing: base * 2^(n-1), at most the cap.
RECONCILE_BACKOFF_BASE = timedelta(seconds=env.int("RECONCILE_BACKOFF_BASE", default=60))
RECONCILE_BACKOFF_CAP = timedelta(seconds=env.int("RECONCILE_BACKOFF_CAP", default=6 * 3600))
# Registered orders (POST /api/v1/orders/): one that D1 has not spoken about this long after
# registration is "silent" and reconciled by cardId; REGISTERED_SILENT_OVERRIDES gives an
# issuer its own threshold ({"ISSUERX001": 7200}). D1 answering 404 for longer than
# REGISTERED_NOT_FOUND_AFTER makes it an exception ("unknown at D1").
REGISTERED_SILENT_AFTER = timedelta(seconds=env.int("REGISTERED_SILENT_AFTER", default=6 * 3600))
REGISTERED_SILENT_OVERRIDES = env.json("REGISTERED_SILENT_OVERRIDES", default={})
REGISTERED_NOT_FOUND_AFTER = timedelta(
    seconds=env.int("REGISTERED_NOT_FOUND_AFTER", default=2 * 24 * 3600)
)
# At most this many orders in one registration request (one transaction).
REGISTRATION_BULK_MAX = env.int("REGISTRATION_BULK_MAX", default=10_000)
# The largest order file the back office's upload accepts. The documented proxy
# (docs/nginx-mtls.conf) caps the staff host's bodies at 2 MB (`client_max_body_size 2m`):
# raise both together, or nginx refuses the upload before the portal can say why.
REGISTRATION_UPLOAD_MAX_BYTES = env.int("REGISTRATION_UPLOAD_MAX_BYTES", default=2 * 1024 * 1024)
# A shipped card the carrier has not delivered (nor returned) this long after shipment is
# "in transit too long".
SHIPMENT_IN_TRANSIT_THRESHOLD = timedelta(
    seconds=env.int("SHIPMENT_IN_TRANSIT_THRESHOLD", default=10 * 24 * 3600)
)
# Tracking page templates per carrier code ({"ups": "https://.../{number}"}), added to or
# replacing those of tracking/domain/carriers.py; used when D1 sends no trackingUrl.
CARRIER_TRACKING_URLS = env.json("CARRIER_TRACKING_URLS", default={})
# How often the sweep runs, how many orders it claims per transaction and per run, and how
# long a claim lasts. The lease must outlast the queue: MAX_ORDERS at the task rate limit.
RECONCILE_SWEEP_INTERVAL = env.float("RECONCILE_SWEEP_INTERVAL", default=60.0)
RECONCILE_SWEEP_BATCH = env.int("RECONCILE_SWEEP_BATCH", default=100)
RECONCILE_SWEEP_MAX_ORDERS = env.int("RECONCILE_SWEEP_MAX_ORDERS", default=1000)
RECONCILE_CLAIM_SECONDS = env.int("RECONCILE_CLAIM_SECONDS", default=300)
# Celery rate limit of the reconcile task, per worker process ("10/s", "600/m").
RECONCILE_TASK_RATE_LIMIT = env("RECONCILE_TASK_RATE_LIMIT", default="10/s")
# Staff asking D1 on demand (look-up, "Ask D1 now"): at most this many asks per user and per
# issuer in each window of D1_ASK_RATE_WINDOW_SECONDS; a refused ask says when to retry.
D1_ASK_RATE_WINDOW_SECONDS = env.int("D1_ASK_RATE_WINDOW_SECONDS", default=60)
D1_ASK_RATE_PER_USER = env.int("D1_ASK_RATE_PER_USER", default=20)
D1_ASK_RATE_PER_ISSUER = env.int("D1_ASK_RATE_PER_ISSUER", default=60)
# "Ask D1 now" on many orders is one job of at most D1_BULK_ASK_MAX orders, asked at
# D1_BULK_ASK_PER_SECOND (keep it under D1's rate limit and RECONCILE_TASK_RATE_LIMIT's share).
D1_BULK_ASK_MAX = env.int("D1_BULK_ASK_MAX", default=500)
D1_BULK_ASK_PER_SECOND = env.float("D1_BULK_ASK_PER_SECOND", default=2.0)
CELERY_BEAT_SCHEDULE.update(
    {
        # `expires`: a tick that no worker took before the next one is dropped, not piled up.
        "reconcile-sweep": {
            "task": "tracking.reconcile_sweep",
            "schedule": RECONCILE_SWEEP_INTERVAL,
            "options": {"expires": RECONCILE_SWEEP_INTERVAL},
        },
        "ingest-fold-sweep": {
            "task": "tracking.intake.fold_pending",
            "schedule": INGEST_FOLD_SWEEP_INTERVAL,
            "options": {"expires": INGEST_FOLD_SWEEP_INTERVAL},
        },
        "clear-expired-tokens": {
            "task": "tracking.clear_expired_tokens",
            "schedule": 24 * 3600,
            "options": {"expires": 3600},
        },
    }
)

# ---------------------------------------------------------------------------- insight
# Production files, sites x stages and predicted ship dates come from rollups a beat task
# refreshes at this interval (seconds); pages read the rollups, never every event.
INSIGHT_REFRESH_INTERVAL = env.float("INSIGHT_REFRESH_INTERVAL", default=300.0)
# The heat-map's windows (days) and the window of shipped orders predictions learn from.
INSIGHT_WINDOWS = tuple(env.list("INSIGHT_WINDOWS", cast=int, default=[7, 30]))
INSIGHT_PREDICTION_WINDOW_DAYS = env.int("INSIGHT_PREDICTION_WINDOW_DAYS", default=30)
# Fewest shipped orders a prediction may rest on, per (issuer, site, stage), then per
# (site, stage), then per stage over all sites; fewer gives no prediction.
INSIGHT_MIN_HISTORY = env.int("INSIGHT_MIN_HISTORY", default=20)
# A file's order is a laggard when it has been in its stage this much longer than the
# file's median order in the same stage.
INSIGHT_LAGGARD_THRESHOLD = timedelta(
    seconds=env.int("INSIGHT_LAGGARD_THRESHOLD", default=12 * 3600)
)
# What a carrier's shipment time (CARD_SHIPPED to delivered) is measured against.
INSIGHT_SHIPMENT_THRESHOLD = timedelta(
    seconds=env.int("INSIGHT_SHIPMENT_THRESHOLD", default=5 * 24 * 3600)
)
CELERY_BEAT_SCHEDULE["insight-refresh"] = {
    "task": "tracking.insight_refresh",
    "schedule": INSIGHT_REFRESH_INTERVAL,
    "options": {"expires": INSIGHT_REFRESH_INTERVAL},
}

# ---------------------------------------------------------------------------- outbound events
# Card-order events for the issuer's own systems (tracking/outbound/, docs/events.md).
# Signing secrets are encrypted with a key derived from this (default: DJANGO_SECRET_KEY).
EVENT_SECRET_KEY = env("EVENT_SECRET_KEY", default="")
# How long the previous secret still signs after a rotation.
EVENT_SECRET_ROTATION_OVERLAP = timedelta(
    seconds=env.int("EVENT_SECRET_ROTATION_OVERLAP", default=24 * 3600)
)
# Endpoint addresses: https only (production refuses http), and never a private, loopback or
# link-local address unless inside one of these networks (CIDR).
EVENT_ENDPOINT_REQUIRE_HTTPS = env.bool("EVENT_ENDPOINT_REQUIRE_HTTPS", default=True)
EVENT_ENDPOINT_ALLOWED_NETWORKS = env.list("EVENT_ENDPOINT_ALLOWED_NETWORKS", default=[])
# An endpoint whose every attempt has failed for this long is disabled (an alert says so).
EVENT_ENDPOINT_DISABLE_AFTER = timedelta(
    seconds=env.int("EVENT_ENDPOINT_DISABLE_AFTER", default=3 * 24 * 3600)
)
EVENT_DELIVERY_CONNECT_TIMEOUT = env.float("EVENT_DELIVERY_CONNECT_TIMEOUT", default=3.05)
EVENT_DELIVERY_READ_TIMEOUT = env.float("EVENT_DELIVERY_READ_TIMEOUT", default=10.0)
EVENT_DELIVERY_CA_BUNDLE = env("EVENT_DELIVERY_CA_BUNDLE", default="")
EVENT_DELIVERY_TASK_TIME_LIMIT = env.int("EVENT_DELIVERY_TASK_TIME_LIMIT", default=60)
# A worker's claim on a delivery it is sending; longer than the timeouts.
EVENT_DELIVERY_LEASE = timedelta(seconds=env.int("EVENT_DELIVERY_LEASE", default=120))
# Retries: exponential back-off with jitter between these, for this long (as Stripe: 3 days).
EVENT_DELIVERY_BACKOFF_BASE = timedelta(seconds=env.int("EVENT_DELIVERY_BACKOFF_BASE", default=30))
EVENT_DELIVERY_BACKOFF_CAP = timedelta(
    seconds=env.int("EVENT_DELIVERY_BACKOFF_CAP", default=6 * 3600)
)
EVENT_DELIVERY_RETRY_FOR = timedelta(
    seconds=env.int("EVENT_DELIVERY_RETRY_FOR", default=3 * 24 * 3600)
)
# Queue deliveries as soon as their transaction commits (the sweep is the safety net).
EVENT_DELIVERY_ON_COMMIT = env.bool("EVENT_DELIVERY_ON_COMMIT", default=True)
EVENT_SWEEP_INTERVAL = env.float("EVENT_SWEEP_INTERVAL", default=30.0)
EVENT_SWEEP_BATCH = env.int("EVENT_SWEEP_BATCH", default=1000)
# The pull feed's page size (GET /api/v1/events/).
EVENT_FEED_PAGE_SIZE = env.int("EVENT_FEED_PAGE_SIZE", default=100)
CELERY_BEAT_SCHEDULE["events-sweep"] = {
    "task": "tracking.events_sweep",
    "schedule": EVENT_SWEEP_INTERVAL,
    "options": {"expires": EVENT_SWEEP_INTERVAL},
}

# ---------------------------------------------------------------------------- retention
# What `manage.py prune` and its beat task remove, per table, in days (0 keeps the table whole);
# tracking/services/retention.py says exactly what each rule removes. No order's state changes.
# Deliveries whose items live nowhere else: refused POSTs (with their kept bodies) and POSTs
# that only repeated stored items.
RETENTION_DELIVERY_DAYS = env.int("RETENTION_DELIVERY_DAYS", default=30)
# Events that changed nothing (stale, no change) of orders finished this long ago.
RETENTION_FINISHED_ORDER_DAYS = env.int("RETENTION_FINISHED_ORDER_DAYS", default=90)
RETENTION_RECONCILE_ATTEMPT_DAYS = env.int("RETENTION_RECONCILE_ATTEMPT_DAYS", default=180)
# Refused calls (credentials, method, rate) are counted per source and minute; old minutes go.
RETENTION_REFUSAL_TALLY_DAYS = env.int("RETENTION_REFUSAL_TALLY_DAYS", default=90)
# Audit entries are evidence: kept for ever unless a number of days is set.
RETENTION_AUDIT_DAYS = env.int("RETENTION_AUDIT_DAYS", default=0)
RETENTION_PRUNE_INTERVAL = env.float("RETENTION_PRUNE_INTERVAL", default=24 * 3600.0)
CELERY_BEAT_SCHEDULE["retention-prune"] = {
    "task": "tracking.retention_prune",
    "schedule": RETENTION_PRUNE_INTERVAL,
    "options": {"expires": 3600},
}

# ---------------------------------------------------------------------------- admin (back office)
# The admin's look (django-unfold), its navigation and its front page; see tracking/admin/.
UNFOLD = {
    "SITE_TITLE": _("D1 card orders"),
    "SITE_HEADER": _("D1 card orders"),
    "SITE_SUBHEADER": _("Back office"),
    "SITE_SYMBOL": "credit_card",
    "SHOW_VIEW_ON_SITE": False,
    "COLORS": {"primary": "tracking.admin.navigation.primary_colors"},
    "STYLES": ["tracking.admin.navigation.admin_stylesheet"],
    "DASHBOARD_CALLBACK": "tracking.admin.dashboard.dashboard_callback",
    "SIDEBAR": {
        "show_search": False,
        "show_all_applications": False,
        "navigation": "tracking.admin.navigation.sidebar_navigation",
    },
}
# Rows per CSV export chunk read from the database (memory stays constant whatever the size).
ADMIN_EXPORT_CHUNK_SIZE = env.int("ADMIN_EXPORT_CHUNK_SIZE", default=2000)
# Orders per page in the admin lists.
ADMIN_LIST_PER_PAGE = env.int("ADMIN_LIST_PER_PAGE", default=50)

# ---------------------------------------------------------------------------- observability
# Logs: "json" lines (production) or readable "console" lines (development); one request id per
# request (D1's x-correlation-id when well formed), carried into Celery tasks.
LOG_FORMAT = env("LOG_FORMAT", default="console")
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = logging_settings(log_format=LOG_FORMAT, level=LOG_LEVEL)
DJANGO_STRUCTLOG_CELERY_ENABLED = True
# The client address is bound by `tracking.observability.receivers` as the rate limits see it
# (a forwarded header only from D1_TRUSTED_PROXIES), not by django-structlog, which would
# believe any X-Forwarded-For.
LOG_CLIENT_IP = env.bool("LOG_CLIENT_IP", default=True)
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# /readyz: the oldest stored-but-unapplied item may wait this long (seconds) before the
# instance reports not ready; the broker check can be switched off for web-only instances.
READINESS_MAX_UNAPPLIED_AGE = env.int("READINESS_MAX_UNAPPLIED_AGE", default=300)
READINESS_CHECK_BROKER = env.bool("READINESS_CHECK_BROKER", default=True)

# /metrics: a bearer token, or peers in these networks. Nobody by default: behind a proxy on the
# same machine every caller looks like loopback, so no address is trusted unless listed.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
# Counters of every process of a host are summed from files in this folder (prometheus-client
# multiprocess mode); empty keeps them in the process (one process only).
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default=str(LOCAL_DIR / "prometheus"))
# Database-derived gauges are shared by scrapes for this long (seconds; 0 = computed each time).
METRICS_DB_CACHE_SECONDS = env.int("METRICS_DB_CACHE_SECONDS", default=15)

# Alerts (admin dashboard and portal_alert_active). Inbound silence: no POST from an issuer for
# ALERT_SILENCE_AFTER seconds, counted only inside ALERT_SILENCE_HOURS on ALERT_SILENCE_WEEKDAYS
# (ALERT_TIME_ZONE); ALERT_SILENCE_OVERRIDES = {"ISSUERX001": {"after": 7200, "hours":
# "08:00-18:00", "weekdays": "mon-fri"}}.
ALERT_TIME_ZONE = env("ALERT_TIME_ZONE", default=TIME_ZONE)
ALERT_SILENCE_AFTER = env.int("ALERT_SILENCE_AFTER", default=3600)
ALERT_SILENCE_HOURS = env("ALERT_SILENCE_HOURS", default="00:00-24:00")
ALERT_SILENCE_WEEKDAYS = env("ALERT_SILENCE_WEEKDAYS", default="mon-sun")
ALERT_SILENCE_OVERRIDES = env.json("ALERT_SILENCE_OVERRIDES", default={})
# Refused POSTs: alert when their share in the window reaches this and is rising.
ALERT_REFUSED_SHARE = env.float("ALERT_REFUSED_SHARE", default=0.05)
ALERT_REFUSED_WINDOW = env.int("ALERT_REFUSED_WINDOW", default=3600)
ALERT_REFUSED_MIN_DELIVERIES = env.int("ALERT_REFUSED_MIN_DELIVERIES", default=20)
# Stuck orders (past RECONCILE_STAGE_THRESHOLDS): alert from this many, critical from the next.
ALERT_STUCK_MIN_ORDERS = env.int("ALERT_STUCK_MIN_ORDERS", default=1)
ALERT_STUCK_CRITICAL = env.int("ALERT_STUCK_CRITICAL", default=50)
# Reconciliation failing: orders still flagged after this many attempts.
ALERT_RECONCILE_ATTEMPTS = env.int("ALERT_RECONCILE_ATTEMPTS", default=5)
# No successful reconcile sweep for this long (seconds; 0 switches the alert off).
ALERT_SWEEP_LATE = env.int("ALERT_SWEEP_LATE", default=3600)

# Scale-out: pool processes per Celery worker (default: one per CPU); `--concurrency` overrides.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=None)
# ---------------------------------------------------------------------------- trust boundary
# How D1 proves it is D1, who on staff may do what, the audit trail and data care: its own
# module, read here so that every environment sees it as part of these settings.
from config.settings.trust import *  # noqa: E402, F403
