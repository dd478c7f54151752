"""Settings for a developer's laptop: the embedded default, debug on, an insecure local key."""

from config.settings.base import *  # noqa: F403
from config.settings.base import LOCAL_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret")
LOCAL_DIR.mkdir(exist_ok=True)

# Outbound events: the demo receiver runs on this machine, over http.
EVENT_ENDPOINT_REQUIRE_HTTPS = env.bool("EVENT_ENDPOINT_REQUIRE_HTTPS", default=False)
EVENT_ENDPOINT_ALLOWED_NETWORKS = env.list(
    "EVENT_ENDPOINT_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]
)
