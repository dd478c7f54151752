"""Helpers for the operations tests: read Prometheus text, reach /metrics, run real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from d1sandbox.keys import key_pair_ensure
from d1sandbox.testing import SandboxProcess
from tests.fixtures.api_tokens import read_api_token
from tests.observability.cluster import METRICS_TOKEN, Cluster

# The D1 sandbox served over real HTTP, shared with the reconciliation tests.
from tests.services.reconcile.conftest import d1, sandbox  # noqa: F401
from tests.services.reconcile.sandbox import Sandbox


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text_or_samples, name: str, **labels) -> float:
    found = samples(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def total(text: str, name: str) -> float:
    """The sum of a metric over all its label values."""
    return sum(v for (n, _), v in samples(text).items() if n == name)


@pytest.fixture
def scrape(settings):
    """GET /metrics as a scraper with the token and return the text."""
    settings.METRICS_TOKEN = "scraper-token"
    client = Client(HTTP_AUTHORIZATION="Bearer scraper-token")

    def get() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return response.content.decode()

    return get


def scrape_url(base_url: str) -> str:
    """GET /metrics of a running instance (started with `portal_env`, which sets the token)."""
    response = requests.get(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis from CELERY_BROKER_URL (each run uses a queue of its own)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("needs a Redis broker (set CELERY_BROKER_URL=redis://...)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis {url} is not reachable: {exc}")
    return url


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    yield running
    running.stop_all()
    for name in running.processes:  # shown by pytest only when the test fails
        print(f"----- {name} (last lines)\n{running.log_tail(name)}")


@pytest.fixture
def d1_sandbox(tmp_path) -> Iterator[Sandbox]:
    """A sandbox of this test's own: its state store is the truth `verify` compares with."""
    folder = tmp_path / "sandbox"
    keys = key_pair_ensure(directory=folder / "keys")
    state_path = folder / "state.sqlite3"
    with SandboxProcess(
        keys_dir=keys.directory, state_path=state_path, log_path=folder / "serve.log"
    ) as process:
        yield Sandbox(process=process, keys=keys, state_path=state_path)


def sandbox_env(running: Sandbox) -> dict[str, str]:
    """The D1_* environment of portal processes that talk to `running`."""
    return {**running.portal_settings(), "D1_MAX_RETRIES": "2"}


@pytest.fixture
def read_token(db) -> str:
    # A superuser: the read API asks for model permissions where staff roles are in force.
    staff = get_user_model().objects.create_user("verifier", is_staff=True, is_superuser=True)
    return read_api_token(staff)
