"""Settings for the test suite: fast hashing, an in-process cache, tasks run eagerly."""

from config.settings.base import *  # noqa: F403
from config.settings.base import LOCAL_DIR, env

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
LOCAL_DIR.mkdir(exist_ok=True)
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "tracking.d1.access.D1ClientSecretHasher",
]
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
# The projector folds right after each delivery commits, in the request: a test that posts and
# then reads an order sees it folded.
INGEST_FOLD = env("INGEST_FOLD", default="inline")
# Each test makes its issuers afresh (and rolls them back): none is remembered between POSTs
# unless a test asks.
D1_ISSUER_CACHE_SECONDS = env.int("D1_ISSUER_CACHE_SECONDS", default=0)

# observability: counters stay in the test process unless a test sets a folder; gauges are read
# fresh on every scrape.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
METRICS_DB_CACHE_SECONDS = env.int("METRICS_DB_CACHE_SECONDS", default=0)
DASHBOARD_CACHE_SECONDS = env.int("DASHBOARD_CACHE_SECONDS", default=0)

# Outbound events: tests run receivers on this machine, over http.
EVENT_ENDPOINT_REQUIRE_HTTPS = env.bool("EVENT_ENDPOINT_REQUIRE_HTTPS", default=False)
EVENT_ENDPOINT_ALLOWED_NETWORKS = env.list(
    "EVENT_ENDPOINT_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]
)
