"""End to end with the issuer's side (issue 11): the sandbox registers every order it places
through `POST /api/v1/orders/` before D1 says anything, drops notifications (20%, and every one
of some orders) and re-orders some cards. After the sweeps `verify` finds no mismatch and no
invisible order, and each re-ordered card's older order is either finished as D1 said or
superseded by the newer one, which shows what D1 last said about it.

Separate processes over real HTTP on PostgreSQL and Redis, started by
tests/services/reconcile/portal.py.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from d1sandbox.keys import key_pair_ensure
from d1sandbox.state import ORDER_OPERATIONS, StateStore
from d1sandbox.verify import VerifyReport
from tests.conftest import grant_every_issuer
from tests.d1sandbox.exceptions import assert_exceptions_are_the_real_problems
from tests.fixtures.api_tokens import read_api_token
from tests.services.reconcile.portal import (  # noqa: F401 (fixtures)
    Processes,
    portal_environment,
    portal_start,
    processes,
    redis_broker,
)
from tests.services.reconcile.sandbox import Sandbox, sandbox_converge, sandbox_feed, sandbox_verify
from tracking.models import CardOrder, Issuer, ReconcileAttempt
from tracking.services.roles import OPERATORS, roles_ensure

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "E2EREGS001"
CONVERGE_SECONDS = 90
# A registered order D1 has not spoken about for 3 s is silent and swept by card; D1's 404s
# (none expected here) would take a day to become an exception.
REGISTERED_CLOCKS = {
    "REGISTERED_SILENT_AFTER": "3",
    "REGISTERED_NOT_FOUND_AFTER": "86400",
}


@dataclass
class Run:
    """One feed with registration against a running portal, and what verify made of it."""

    feed: str  # the feed's summary
    verify: str  # the output of `python -m d1sandbox verify`
    report: VerifyReport
    state_path: Path
    converged_after: float

    def count(self, label: str, *, of: str = "verify") -> int:
        text = self.feed if of == "feed" else self.verify
        return int(re.search(rf"{label}:?\s+(\d+)", text).group(1))


def _registered_run(
    *, tmp_path: Path, broker: str, running: Processes, orders: int, feed_args: list[str]
) -> Run:
    """Portal and sandbox up; `feed --register` with `feed_args`; verify until the sweeps end."""
    Issuer.objects.create(issuer_id=ISSUER_ID, name="Registering Bank")
    # Operators may register orders, and read tracking numbers unmasked (verify compares them).
    staff = get_user_model().objects.create_user("registrar", is_staff=True)
    staff.groups.add(roles_ensure()[OPERATORS])
    grant_every_issuer(staff)
    token = read_api_token(staff)

    keys = key_pair_ensure(directory=tmp_path / "sandbox" / "keys")
    state_path = tmp_path / "sandbox" / "state.sqlite3"
    sandbox = Sandbox(
        process=running.sandbox(keys_dir=keys.directory, state_path=state_path),
        keys=keys,
        state_path=state_path,
    )
    env = portal_environment(tmp_path=tmp_path, sandbox=sandbox, broker=broker, **REGISTERED_CLOCKS)
    portal_url = portal_start(processes=running, env=env, tmp_path=tmp_path)

    feed = sandbox_feed(
        portal_url=portal_url,
        issuer_id=ISSUER_ID,
        orders=orders,
        state_path=state_path,
        env=env,
        args=["--register", "--register-token", token, *feed_args],
    )
    report, converged_after = sandbox_converge(
        portal_url=portal_url,
        token=token,
        state_path=state_path,
        seconds=CONVERGE_SECONDS,
        visible=True,
    )
    code, output = sandbox_verify(
        portal_url=portal_url, token=token, state_path=state_path, env=env
    )
    assert code == 0, output
    # None from a normal carrier word, none from an ended hold; every real problem is there.
    assert_exceptions_are_the_real_problems(issuer_ids=[ISSUER_ID], report=report)
    return Run(
        feed=feed,
        verify=output,
        report=report,
        state_path=state_path,
        converged_after=converged_after,
    )


def test_registered_orders_with_drops_and_silent_orders_all_end_visible_and_true(
    tmp_path,
    redis_broker,  # noqa: F811
    processes,  # noqa: F811
):
    orders = 120
    run = _registered_run(
        tmp_path=tmp_path,
        broker=redis_broker,
        running=processes,
        orders=orders,
        feed_args=[
            "--seed", "31",
            "--drop", "0.2",
            "--silent-rate", "0.1",
            "--reissue-rate", "0.05",
            "--duplicate", "0.1",
            "--reorder", "0.1",
            # Tracking-hub orders are not registered: one whose only item was dropped is
            # invisible by right, and this test wants every order visible.
            "--standalone-rate", "0",
        ],
    )  # fmt: skip
    silent = run.count("silent orders", of="feed")
    assert silent > 0 and run.count("dropped", of="feed") > 0, run.feed
    assert re.search(r"registered:\s+\d+ new, \d+ already there, 0 refused, 0 gave up", run.feed)

    assert "mismatches: 0" in run.verify, run.verify
    assert "invisible orders (never seen by the portal): 0" in run.verify, run.verify
    checked = run.count("orders checked")
    assert checked > orders * 0.8, run.verify
    assert run.count("registered orders") > orders * 0.9, run.verify
    print(
        f"{orders} orders, {silent} silent, {run.count('dropped', of='feed')} notifications "
        f"dropped; converged {run.converged_after:.1f} s after the stream; verify: {checked} "
        f"checked, {run.count('registered orders')} registered, 0 mismatches, 0 invisible, "
        f"{len(run.report.hidden)} hidden"
    )


def test_a_reordered_card_ends_with_the_old_order_superseded_and_the_new_one_true(
    tmp_path,
    redis_broker,  # noqa: F811
    processes,  # noqa: F811
):
    # Every card ordered twice; the first order's last words (or all of them) often dropped.
    run = _registered_run(
        tmp_path=tmp_path,
        broker=redis_broker,
        running=processes,
        orders=40,
        feed_args=[
            "--seed", "37",
            "--reissue-rate", "1",
            "--drop", "0.3",
            "--silent-rate", "0.15",
            "--standalone-rate", "0",
        ],
    )  # fmt: skip
    assert "mismatches: 0" in run.verify, run.verify  # the newer orders show what D1 said

    store = StateStore(run.state_path)
    try:
        truth = [o for o in store.orders(issuer_ids=[ISSUER_ID]) if o.operation in ORDER_OPERATIONS]
    finally:
        store.close()
    by_card = defaultdict(list)
    for order in truth:
        by_card[order.card_id].append(order)
    portal = {
        (o.card_id, o.operation_id): o
        for o in CardOrder.objects.filter(issuer__issuer_id=ISSUER_ID, card_id__in=list(by_card))
    }
    reordered = superseded = 0
    for card_id, orders in by_card.items():
        if len(orders) < 2:
            continue
        reordered += 1
        older, newer = sorted(orders, key=lambda o: o.start_seq)
        new_order = portal[(card_id, newer.operation_id)]
        assert new_order.superseded_by_id is None, card_id
        # Registered, so never invisible; placed in a file, it may never learn its operationId.
        old_order = portal.get((card_id, older.operation_id)) or portal[(card_id, "")]
        if old_order.superseded_by_id is None:
            # Not superseded: its end reached the portal, and verify compared it with D1's.
            assert old_order.is_terminal, (
                f"{card_id}: the older order {older.operation_id} is still open "
                f"({old_order.production_status or 'no events'}) beside {newer.operation_id}"
            )
            continue
        superseded += 1
        assert old_order.superseded_by_id == new_order.pk, card_id
        # Swept no more: no attempt on it began after it was superseded.
        assert not ReconcileAttempt.objects.filter(
            order=old_order, started_at__gt=old_order.superseded_at
        ).exists(), card_id
    assert reordered > 20 and superseded > 0, (reordered, superseded)
    print(
        f"{reordered} re-ordered cards, {superseded} older orders superseded; converged "
        f"{run.converged_after:.1f} s after the stream; verify: {run.count('orders checked')} "
        f"checked, 0 mismatches, 0 invisible, {len(run.report.hidden)} hidden"
    )
