"""Production settings plus the bare-view anchor's URL, for `bench/ingest.py` only."""

from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"
