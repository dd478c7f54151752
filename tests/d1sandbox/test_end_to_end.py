"""End to end against the sandbox's own timeline: every variation of issues 9 and 18 on, with
drops, duplicates and reordering; after the stream and the sweeps the portal must show, for every
order, what D1 last said about it (by D1's clock, not by arrival), and its Exceptions must hold
exactly the sandbox's real problems.

Three issuers, as D1 may serve them: one ships its cards, one orders without shipment (its orders
end SUCCESSFUL at CARD_PROD_DONE) and gets productionStatus as a bare operation object, one gets
it as a list.

Separate processes over real HTTP on PostgreSQL and Redis, started by
tests/services/reconcile/portal.py:
gunicorn, a Celery worker and beat, the sandbox's `serve`, then `feed` and `verify` as commands.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from d1sandbox.keys import key_pair_ensure
from tests.conftest import grant_every_issuer
from tests.d1sandbox.exceptions import assert_exceptions_are_the_real_problems
from tests.fixtures.api_tokens import read_api_token
from tests.services.reconcile.portal import (  # noqa: F401 (fixtures)
    portal_environment,
    portal_start,
    processes,
    redis_broker,
)
from tests.services.reconcile.sandbox import Sandbox, sandbox_converge, sandbox_feed, sandbox_verify
from tracking.models import Issuer
from tracking.services.roles import OPERATORS, roles_ensure

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "E2ETIME001"
NO_SHIPMENT_ISSUER_ID = "E2ETIME002"  # and productionStatus answered as a bare object
LIST_ANSWER_ISSUER_ID = "E2ETIME003"
ISSUER_IDS = [ISSUER_ID, NO_SHIPMENT_ISSUER_ID, LIST_ANSWER_ISSUER_ID]
ORDERS = 120
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
    "--carrier-exception-rate", "0.06",
    "--returned-rate", "0.06",
    "--expired-rate", "0.03",
    "--novel-word-rate", "0.15",
    "--changed-copy-rate", "0.15",
    "--japan-carrier-rate", "0.2",
    "--offset-time-rate", "0.2",
    "--zoneless-time-rate", "0.15",
    "--numeric-id-rate", "0.3",
    "--pair", "0.1",
]  # fmt: skip


def test_every_variation_ends_in_what_d1_last_said(tmp_path, redis_broker, processes):  # noqa: F811
    for issuer_id in ISSUER_IDS:
        Issuer.objects.create(issuer_id=issuer_id, name=f"Timeline Bank {issuer_id[-1]}")
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
    sandbox.process.answer_shapes(**{NO_SHIPMENT_ISSUER_ID: "bare", LIST_ANSWER_ISSUER_ID: "list"})
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
            "--issuer",
            NO_SHIPMENT_ISSUER_ID,
            "--issuer",
            LIST_ANSWER_ISSUER_ID,
            "--no-shipment-issuer",
            NO_SHIPMENT_ISSUER_ID,
        ],
        timeout=180,
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
    # Exceptions: every real problem, and none from a normal carrier word or an ended hold.
    assert_exceptions_are_the_real_problems(issuer_ids=ISSUER_IDS, report=report)
    assert {"failed", "returned", "carrier_exception", "data_exception"} <= set(
        report.problems.values()
    ), report.problems
    print(
        f"converged {converged:.1f} s after the stream; {checked} orders "
        f"checked, {len(report.invisible)} invisible, {len(report.hidden)} hidden, "
        f"{len(report.problems)} real problems, all in Exceptions and nothing else"
    )
