"""End to end against the sandbox's own timeline: every variation of issue 9 on, with drops,
duplicates and reordering; after the stream and the sweeps the portal must show, for every order,
what D1 last said about it (by D1's clock, not by arrival).

Separate processes over real HTTP on PostgreSQL and Redis, started by tests/reconcile/portal.py:
gunicorn, a Celery worker and beat, the sandbox's `serve`, then `feed` and `verify` as commands.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from d1sandbox.keys import key_pair_ensure
from tests.conftest import grant_every_issuer
from tests.fixtures.api_tokens import read_api_token
from tests.reconcile.portal import (  # noqa: F401 (fixtures)
    portal_environment,
    portal_start,
    processes,
    redis_broker,
)
from tests.reconcile.sandbox import Sandbox, sandbox_converge, sandbox_feed, sandbox_verify
from tracking.models import Issuer
from tracking.services.roles import OPERATORS, roles_ensure

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "E2ETIME001"
ORDERS = 100
CONVERGE_SECONDS = 60
# Every variation of issue 9 at a rate that gives each several orders in one run.
VARIATIONS = [
    "--failed-step-rate", "0.1",
    "--no-details-rate", "0.06",
    "--hold-completion-rate", "0.08",
    "--unknown-rate", "0.08",
    "--reattempt-rate", "0.15",
    "--prod-exception-rate", "0.06",
    "--no-shipment-rate", "0.05",
    "--update-order-rate", "0.1",
    "--reissue-rate", "0.08",
    "--late-copy", "0.3",
]  # fmt: skip


def test_every_variation_ends_in_what_d1_last_said(tmp_path, redis_broker, processes):  # noqa: F811
    Issuer.objects.create(issuer_id=ISSUER_ID, name="Timeline Bank")
    staff = get_user_model().objects.create_user("timeline-verifier", is_staff=True)
    staff.groups.add(roles_ensure()[OPERATORS])
    grant_every_issuer(staff)
    token = read_api_token(staff)

    keys = key_pair_ensure(directory=tmp_path / "sandbox" / "keys")
    state_path = tmp_path / "sandbox" / "state.sqlite3"
    sandbox = Sandbox(
        process=processes.sandbox(keys_dir=keys.directory, state_path=state_path),
        keys=keys,
        state_path=state_path,
    )
    env = portal_environment(tmp_path=tmp_path, sandbox=sandbox, broker=redis_broker)
    portal_url = portal_start(processes=processes, env=env, tmp_path=tmp_path)

    feed = sandbox_feed(
        portal_url=portal_url,
        issuer_id=ISSUER_ID,
        orders=ORDERS,
        state_path=state_path,
        env=env,
        args=[
            "--seed",
            "29",
            "--drop",
            "0.2",
            "--duplicate",
            "0.1",
            "--reorder",
            "0.1",
            *VARIATIONS,
        ],
        timeout=120,
    )
    late_copies = int(re.search(r"late copies:\s+(\d+)", feed).group(1))
    assert late_copies > 0, feed

    report, converged = sandbox_converge(
        portal_url=portal_url, token=token, state_path=state_path, seconds=CONVERGE_SECONDS
    )

    code, output = sandbox_verify(
        portal_url=portal_url, token=token, state_path=state_path, env=env
    )
    assert code == 0 and "mismatches: 0" in output, output
    checked = int(re.search(r"orders checked: (\d+)", output).group(1))
    assert checked > ORDERS * 0.8
    print(
        f"converged {converged:.1f} s after the stream; {checked} orders "
        f"checked, {len(report.invisible)} invisible, {len(report.hidden)} hidden"
    )
