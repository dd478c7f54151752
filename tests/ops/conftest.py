"""Helpers for the operations tests: read Prometheus text, reach /metrics, run real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from d1sandbox.keys import key_pair_ensure
from tests.ops.cluster import Cluster

# The D1 sandbox served over real HTTP, shared with the reconciliation tests.
from tests.reconcile.conftest import d1, sandbox, sandbox_serve  # noqa: F401


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
def scrape():
    """GET /metrics from loopback (allowed by default) and return the text."""
    client = Client(REMOTE_ADDR="127.0.0.1")

    def get() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return response.content.decode()

    return get


def scrape_url(base_url: str) -> str:
    response = requests.get(f"{base_url}/metrics", timeout=30)
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


class RunningSandbox:
    def __init__(self, url: str, key_id: str, private_key_path: Path, folder: Path) -> None:
        self.url = url
        self.key_id = key_id
        self.private_key_path = private_key_path
        self.folder = folder

    def env(self) -> dict[str, str]:
        """The portal's D1_* settings pointing at this sandbox."""
        return {
            "D1_API_BASE_URL": f"{self.url}/banking/v1",
            "D1_TOKEN_URL": f"{self.url}/authz/v1/oauth2/token",
            "D1_KEY_ID": self.key_id,
            "D1_PRIVATE_KEY_PATH": str(self.private_key_path),
            "D1_MAX_RETRIES": "2",
        }

    def faults(self, **changes) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=changes, timeout=5).raise_for_status()


@pytest.fixture
def d1_sandbox(tmp_path, cluster) -> RunningSandbox:
    """A sandbox of this test's own (its state store is the truth `verify` compares with)."""
    folder = tmp_path / "sandbox"
    key_pair = key_pair_ensure(directory=folder / "keys")
    process, url = sandbox_serve(directory=folder)
    cluster.processes["sandbox"] = process
    return RunningSandbox(url, key_pair.key_id, key_pair.private_key_path, folder)


@pytest.fixture
def read_token(db) -> str:
    staff = get_user_model().objects.create_user("verifier", is_staff=True)
    return Token.objects.create(user=staff).key
