"""End to end: the sandbox feeds gunicorn with drops, duplicates and reordering, in the words of
real carriers and with the ids issuers really use (its defaults); Celery beat and a worker
reconcile; afterwards `python -m d1sandbox verify` finds no mismatch, and Exceptions hold exactly
the sandbox's real problems.

Everything runs as separate processes over real HTTP, on PostgreSQL and Redis: the test database
of this session is handed to gunicorn and Celery through DATABASE_URL, so the test must be
transactional (its rows are committed where the other processes can see them).
"""

from __future__ import annotations

import re
import sys

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count

from d1sandbox.keys import key_pair_ensure
from tests.conftest import grant_every_issuer
from tests.d1sandbox.exceptions import assert_exceptions_are_the_real_problems
from tests.fixtures.api_tokens import read_api_token
from tests.services.reconcile.portal import (  # noqa: F401 (fixtures)
    free_port,
    portal_environment,
    processes,
    redis_broker,
    wait_for_http,
)
from tests.services.reconcile.sandbox import Sandbox, sandbox_converge, sandbox_feed, sandbox_verify
from tracking.models import CardOrder, Issuer, ReconcileAttempt
from tracking.services.roles import OPERATORS, roles_ensure

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "E2EBANK001"
ORDERS = 200
# Short clocks so a run takes seconds: every stage counts as stuck after 3 s, shipped orders
# are asked again after 3 s of quiet, and the beat sweeps every second.
# After the stream: at most this many seconds (about 60 sweeps) for the portal to converge.
CONVERGE_SECONDS = 60


def test_dropped_duplicated_and_reordered_notifications_end_in_the_truth(
    tmp_path,
    redis_broker,  # noqa: F811
    processes,  # noqa: F811
):
    Issuer.objects.create(issuer_id=ISSUER_ID, name="End-to-end Bank")
    # verify reads tracking numbers, which only operators see unmasked.
    staff = get_user_model().objects.create_user("verifier", is_staff=True)
    staff.groups.add(roles_ensure()[OPERATORS])
    grant_every_issuer(staff)
    token = read_api_token(staff)

    sandbox_dir = tmp_path / "sandbox"
    keys = key_pair_ensure(directory=sandbox_dir / "keys")
    state_path = sandbox_dir / "state.sqlite3"
    sandbox = Sandbox(
        process=processes.sandbox(keys_dir=keys.directory, state_path=state_path),
        keys=keys,
        state_path=state_path,
    )

    web_port = free_port()
    portal_url = f"http://127.0.0.1:{web_port}"
    env = portal_environment(tmp_path=tmp_path, sandbox=sandbox, broker=redis_broker)
    python = sys.executable

    web = processes.start(
        "web",
        [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{web_port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--no-control-socket",
        ],
        env,
    )
    processes.start(
        "worker",
        [python, "-m", "celery", "-A", "config", "worker", "--concurrency", "2", "-l", "INFO"],
        env,
    )
    # Two beats, as after a careless deployment: the sweep's claims make the second harmless.
    for n in (1, 2):
        processes.start(
            f"beat{n}",
            [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "INFO",
                "-s",
                str(tmp_path / f"beat{n}-schedule"),
            ],
            env,
        )
    wait_for_http(f"{portal_url}/api/schema/", timeout=30, process=web)

    feed = sandbox_feed(
        portal_url=portal_url,
        issuer_id=ISSUER_ID,
        orders=ORDERS,
        state_path=state_path,
        env=env,
        args=["--seed", "13", "--drop", "0.2", "--duplicate", "0.1", "--reorder", "0.1"],
    )
    dropped = int(re.search(r"dropped:\s+(\d+)", feed).group(1))
    assert dropped > 0, feed

    # The stream is over; give the beat a bounded number of sweeps to recover what was dropped.
    report, converged = sandbox_converge(
        portal_url=portal_url, token=token, state_path=state_path, seconds=CONVERGE_SECONDS
    )

    code, output = sandbox_verify(
        portal_url=portal_url, token=token, state_path=state_path, env=env
    )
    assert code == 0 and "mismatches: 0" in output, output
    checked = int(re.search(r"orders checked: (\d+)", output).group(1))
    assert checked > ORDERS * 0.9
    # None from a normal carrier word, none from an ended hold; every real problem is there.
    assert_exceptions_are_the_real_problems(issuer_ids=[ISSUER_ID], report=report)
    assert report.problems, "the sandbox's defaults include failures and carrier exceptions"

    outcomes = dict(
        ReconcileAttempt.objects.values_list("outcome").annotate(n=Count("id")).order_by()
    )
    print(
        f"dropped {dropped} notifications; converged {converged:.1f} s "
        f"after the stream; attempts {outcomes}"
    )
    # Reconciliation did the recovering, and left a record of it.
    assert ReconcileAttempt.objects.filter(outcome="changed", trigger="sweep").exists()
    # Every card order the portal holds was checked, except an older order of a card ordered
    # again whose last word was dropped: productionStatus answers with the newer one.
    hidden = int(re.search(r"hidden by a newer order of the card [^:]*: (\d+)", output).group(1))
    orders = CardOrder.objects.filter(
        issuer__issuer_id=ISSUER_ID, operation__in=["PRODUCE", "STANDALONE_TRACKING"]
    )
    assert orders.count() == checked + hidden
