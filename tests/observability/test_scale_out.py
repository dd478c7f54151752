"""Scale-out, for real: two gunicorn instances, two Celery workers and one beat on PostgreSQL and
Redis, both web instances fed by the D1 sandbox (drops, duplicates, reordering), and at the end
`python -m d1sandbox verify` finds no mismatch. The metrics of all those processes add up.
"""

from __future__ import annotations

import json
import time

import pytest

from d1sandbox.verify import verify_run
from tests.observability.cluster import (
    feed_figure,
    portal_env,
    sandbox_feed,
    session_database_url,
)
from tests.observability.conftest import sandbox_env, scrape_url, total, value
from tests.services.reconcile.sandbox import sandbox_verify
from tracking.models import CardOrder, Issuer, NotificationDelivery, ReconcileAttempt

pytestmark = [pytest.mark.postgres, pytest.mark.drill, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "SCALEBANK1"
ORDERS_PER_FEED = 60
CONVERGE_SECONDS = 60


def test_two_web_instances_two_workers_one_beat_end_in_the_truth(
    tmp_path, cluster, d1_sandbox, redis_url, read_token
):
    Issuer.objects.create(issuer_id=ISSUER_ID, name="Scale-out Bank")
    env = portal_env(
        database_url=session_database_url(),
        broker_url=redis_url,
        cache_url=redis_url.rsplit("/", 1)[0] + "/5",
        folder=tmp_path,
        **sandbox_env(d1_sandbox),
    )
    web_a = cluster.web("web-a", env, workers=2, threads=2)
    web_b = cluster.web("web-b", env, workers=2, threads=2)
    cluster.worker("worker-1", env)
    cluster.worker("worker-2", env)
    cluster.beat("beat", env)

    # Both feeds record the truth in the store the sandbox answers productionStatus from.
    truth = d1_sandbox.state_path
    feeds = [
        sandbox_feed(
            cluster,
            name=f"feed-{n}",
            portal_url=url,
            issuer_id=ISSUER_ID,
            state_path=truth,
            seed=30 + n,
            orders=ORDERS_PER_FEED,
            env=env,
            extra=("--drop", "0.1", "--duplicate", "0.1", "--reorder", "0.1", "--concurrency", "2"),
            background=True,
        )
        for n, url in enumerate((web_a, web_b), start=1)
    ]
    for process in feeds:
        assert process.wait(timeout=180) == 0
    outputs = [cluster.log_text(f"feed-{n}") for n in (1, 2)]
    assert all(feed_figure(text, "dropped") > 0 for text in outputs)

    # The stream is over: a bounded number of sweeps recovers what was dropped.
    deadline = time.monotonic() + CONVERGE_SECONDS
    while time.monotonic() < deadline:
        report = verify_run(portal_url=web_a, token=read_token, state_path=truth, out=print)
        if report.ok:
            break
        time.sleep(1)
    for url in (web_a, web_b):
        code, output = sandbox_verify(portal_url=url, token=read_token, state_path=truth, env=env)
        assert code == 0 and "mismatches: 0" in output, output
        invisible = feed_figure(output, "invisible orders (never seen by the portal)")
        hidden = feed_figure(
            output, "hidden by a newer order of the card (D1's last word about them was dropped)"
        )
        checked = feed_figure(output, "orders checked")
        assert checked + invisible + hidden == 2 * ORDERS_PER_FEED, output

    # Every process of the host counted into the same metrics, seen from either instance.
    text = scrape_url(web_b)
    assert (
        total(text, "portal_d1_notifications_total")
        == NotificationDelivery.objects.filter(source="webhook").count()
    )
    assert total(text, "portal_reconcile_attempts_total") == ReconcileAttempt.objects.count() > 0
    assert value(text, "portal_reconcile_sweep_last_success_age_seconds") < 30
    assert (
        total(text, "portal_orders") + total(text, "portal_orders_finished_24h")
        == CardOrder.objects.count()
        > ORDERS_PER_FEED
    )

    # One request id from D1's correlation id through the web logs, and from the sweep into
    # the reconcile tasks it queued.
    web_lines = [
        json.loads(line) for line in cluster.log_text("web-a").splitlines() if "{" in line[:1]
    ]
    stored = [line for line in web_lines if line["event"].startswith("delivery stored")]
    assert stored and all(
        f"correlation_id={line['request_id']}" in line["event"] for line in stored
    )
    worker_lines = [
        json.loads(line)
        for name in ("worker-1", "worker-2")
        for line in cluster.log_text(name).splitlines()
        if line.startswith("{")
    ]
    sweep_ids = {
        line["request_id"]
        for line in worker_lines
        if line.get("event") == "task_started" and line.get("task") == "tracking.reconcile_sweep"
    }
    reconcile_ids = {
        line["request_id"]
        for line in worker_lines
        if line.get("event") == "task_started" and line.get("task") == "tracking.reconcile_order"
    }
    assert reconcile_ids and reconcile_ids <= sweep_ids
