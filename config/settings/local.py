"""Settings for a developer's laptop: the embedded default, debug on, an insecure local key."""

from config.settings.base import *  # noqa: F403
from config.settings.base import LOCAL_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret")
LOCAL_DIR.mkdir(exist_ok=True)
