"""Helpers for the operations tests: read Prometheus text, reach /metrics as a scraper."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

# The D1 sandbox served over real HTTP, shared with the reconciliation tests.
from tests.reconcile.conftest import d1, sandbox  # noqa: F401


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


@pytest.fixture
def scrape():
    """GET /metrics from loopback (allowed by default) and return the text."""
    client = Client(REMOTE_ADDR="127.0.0.1")

    def get() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return response.content.decode()

    return get
