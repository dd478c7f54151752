"""The D1 sandbox feeds a portal that requires bearer tokens, as D1 with outbound OAuth would.

`python -m d1sandbox feed --client-id --client-secret` gets its token from our token endpoint
and sends it with every POST; without credentials every POST is refused 401 and recorded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from d1sandbox.testing import PROJECT_ROOT
from tests.fixtures import spec_examples as spec
from tracking.d1.clients import d1_client_create
from tracking.models import CardOrder, Issuer, NotificationDelivery, RefusalTally

pytestmark = pytest.mark.django_db(transaction=True)


def feed(live_server, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "d1sandbox", "feed",
        "--portal", live_server.url,
        "--issuer", spec.ISSUER_ID,
        "--orders", "6",
        "--seed", "7",
        "--drop", "0",
        "--state", str(tmp_path / "state.sqlite3"),
        "--backoff-base", "0.01",
        "--backoff-cap", "0.05",
        *extra,
    ]  # fmt: skip
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def bearer_portal(settings):
    settings.D1_WEBHOOK_REQUIRE_BEARER = True
    return Issuer.objects.create(issuer_id=spec.ISSUER_ID, name="Example Bank")


def test_feed_with_client_credentials_is_accepted(bearer_portal, live_server, tmp_path):
    credentials = d1_client_create(issuer=bearer_portal)

    run = feed(
        live_server,
        tmp_path,
        "--client-id",
        credentials.client_id,
        "--client-secret",
        credentials.client_secret,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "portal token requests:   1" in run.stdout
    statuses = set(NotificationDelivery.objects.values_list("status_code", flat=True))
    assert statuses == {204}
    assert CardOrder.objects.filter(issuer=bearer_portal).count() >= 6


def test_feed_without_credentials_is_refused_and_every_refusal_recorded(
    bearer_portal, live_server, tmp_path
):
    run = feed(live_server, tmp_path, "--orders", "2", "--max-retries", "0")

    assert run.returncode != 0
    assert not CardOrder.objects.exists()
    # Refused at the gate: counted per source and minute, none kept as a delivery.
    assert not NotificationDelivery.objects.exists()
    refused = RefusalTally.objects.values_list("status_code", "error_code")
    assert refused and set(refused) == {(401, "MISSING_TOKEN")}
