"""Fault drills of the projector with real processes (INGEST_FOLD=celery): the webhook only
stores, and what waits to be folded survives the database going away and the projector being
killed in the middle of a set. Listed with their figures in docs/reliability.md.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.observability.cluster import (
    Cluster,
    ThrowawayPostgres,
    portal_env,
    session_database_url,
    wait_until,
)
from tests.observability.conftest import sandbox_env
from tests.observability.test_drills import (
    ISSUER_ID,
    portal_on_throwaway_postgres,
    post_like_d1,
    report,
)
from tests.services.reconcile.items import body, item
from tracking.models import Issuer

pytestmark = [pytest.mark.postgres, pytest.mark.drill, pytest.mark.django_db(transaction=True)]

FOLD_STEPS = ("CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY")
# The projector's clocks for these drills: a sweep every second; nothing else of beat's runs.
PROJECTOR_ONLY = {
    "INGEST_FOLD": "celery",
    "INGEST_FOLD_SWEEP_INTERVAL": "1",
    "RECONCILE_SWEEP_INTERVAL": "3600",
    "EVENT_SWEEP_INTERVAL": "3600",
}


def backlog_deliveries(prefix: str, cards: int, *, per_body: int) -> list[list[dict]]:
    """D1's deliveries for `cards` new orders, one list per step (sent in step order).

    Each body holds `per_body` cards at one step and the first of its items twice (a copy
    inside one delivery); every third body is sent twice (D1 sending it again: copies of stored
    items, which wait as `EventCopy` rows).
    """
    names = [f"{prefix}-{n}" for n in range(cards)]
    steps = []
    for status in FOLD_STEPS:
        bodies = []
        for number, start in enumerate(range(0, cards, per_body)):
            items = [item(name, status) for name in names[start : start + per_body]]
            sent = body(*items, items[0])
            bodies += [sent, sent] if number % 3 == 0 else [sent]
        steps.append(bodies)
    return steps


def copies_sent(steps: list[list[dict]]) -> Counter:
    """(card, step) → how many copies of that item D1 sent."""
    return Counter(
        (operation["cardId"], operation["details"]["status"])
        for bodies in steps
        for sent in bodies
        for operation in sent["operations"]
    )


def deliver(url: str, steps: list[list[dict]], *, threads: int = 4) -> Counter:
    """POST every body as D1 does (retried until accepted), a step's bodies at once; answers."""
    answers: Counter = Counter()
    with ThreadPoolExecutor(threads) as pool:
        for bodies in steps:
            for sent in pool.map(lambda payload: post_like_d1(url, payload), bodies):
                answers.update(sent)
    return answers


def waiting(database_url: str) -> tuple[int, int]:
    """(events not folded yet, copies not counted yet), read from outside the portal."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as connection:
        return connection.execute(
            "SELECT (SELECT count(*) FROM tracking_operationevent WHERE applied_at IS NULL), "
            "(SELECT count(*) FROM tracking_eventcopy)"
        ).fetchone()


def nothing_lost_nothing_doubled(database_url: str, sent: Counter) -> dict:
    """Each item D1 sent is one event counted once per copy sent; each order counts its own
    distinct events and shows its latest step. Returns the figures."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT card_id, production_status, count(*), sum(times_received) "
            "FROM tracking_operationevent GROUP BY card_id, production_status"
        ).fetchall()
        miscounted = connection.execute(
            "SELECT count(*) FROM tracking_cardorder o WHERE o.event_count <> "
            "(SELECT count(*) FROM tracking_operationevent e WHERE e.order_id = o.id)"
        ).fetchone()[0]
        statuses = dict(
            connection.execute(
                "SELECT production_status, count(*) FROM tracking_cardorder GROUP BY 1"
            ).fetchall()
        )
    stored_twice = [(card, step) for card, step, events, _ in rows if events != 1]
    received = {(card, step): int(times) for card, step, _, times in rows}
    assert stored_twice == []
    assert received == dict(sent)  # no item lost, no copy lost or counted twice
    assert miscounted == 0
    cards = len({card for card, _ in sent})
    assert statuses == {FOLD_STEPS[-1]: cards}, statuses
    return {"events": len(rows), "copies_sent": sum(sent.values()), "orders": cards}


def rederive_dry_run(cluster: Cluster, env: dict[str, str]) -> tuple[int, dict[str, int], str]:
    """What `manage.py rederive --dry-run` says would change: how many orders (0: each is as
    the rules fold its events), how many per field, and its output."""
    output = cluster.manage(env, "rederive", "--dry-run")
    match = re.search(r"Orders whose state changes: (\d+)", output)
    assert match, output
    per_field = re.findall(r"^  (\w+): (\d+) orders?, e\.g\.$", output, re.MULTILINE)
    fields = {name: int(count) for name, count in per_field}
    return int(match.group(1)), fields, output


def last_message_behind(database_url: str) -> tuple[int, int]:
    """(orders whose last message is behind their events' last arrival, orders ahead of it)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        return connection.execute(
            "SELECT count(*) FILTER (WHERE o.last_event_at < e.last), "
            "count(*) FILTER (WHERE o.last_event_at > e.last) FROM tracking_cardorder o "
            "JOIN (SELECT order_id, max(last_received_at) AS last FROM tracking_operationevent "
            "GROUP BY order_id) e ON e.order_id = o.id"
        ).fetchone()


def test_postgres_stopped_while_events_wait_to_be_folded(tmp_path, cluster, d1_sandbox, redis_url):
    postgres = ThrowawayPostgres()
    try:
        database_url, env = portal_on_throwaway_postgres(
            postgres,
            cluster=cluster,
            tmp_path=tmp_path,
            d1_sandbox=d1_sandbox,
            redis_url=redis_url,
            **PROJECTOR_ONLY,
        )
        web = cluster.web("web", env, workers=2, threads=2)
        url = f"{web}/notifications/d1/v2/issuers/{ISSUER_ID}/cards"
        steps = backlog_deliveries("wait", 40, per_body=5)
        sent = copies_sent(steps)
        answers = deliver(url, steps)
        assert set(answers) == {"204"}, answers
        # No projector runs yet: every order's events wait, and the copies of stored items.
        unfolded, copies = waiting(database_url)
        assert unfolded == len(sent) and copies > 0, (unfolded, copies)

        postgres.stop()
        outage_started = time.monotonic()
        worker = cluster.worker("worker", env, concurrency=1)
        cluster.beat("beat", env)

        def fold_failed() -> int:
            return sum(
                '"task_failed"' in line and "fold_pending" in line
                for line in cluster.log_text("worker").splitlines()
            )

        # The woken task and beat's sweeps run, and fail, while the database is away.
        assert wait_until(lambda: fold_failed() >= 3, timeout=40), cluster.log_tail("worker")
        assert worker.poll() is None, cluster.log_tail("worker")
        failures = fold_failed()
        postgres.start()
        outage = time.monotonic() - outage_started
        back = time.monotonic()

        def folded() -> bool:
            return waiting(database_url) == (0, 0)

        assert wait_until(folded, timeout=30, interval=0.5), waiting(database_url)
        caught_up = time.monotonic() - back
        assert worker.poll() is None  # the same worker, alive throughout
        figures = nothing_lost_nothing_doubled(database_url, sent)
        # The copies were all counted before the one fold: every order is exactly as the rules
        # fold its events, arrival times included.
        changes, _, output = rederive_dry_run(cluster, env)
        assert changes == 0, output
        report(
            "postgres-stopped-fold-waiting",
            posts=sum(answers.values()),
            waiting_events=unfolded,
            waiting_copies=copies,
            outage_s=f"{outage:.1f}",
            failed_folds=failures,
            caught_up_s=f"{caught_up:.1f}",
            **figures,
            rederive_changes=0,
        )
    finally:
        cluster.stop_all()
        postgres.destroy()


def test_projector_killed_mid_set(tmp_path, cluster, d1_sandbox, redis_url):
    cards, batch = 1200, 20
    Issuer.objects.create(issuer_id=ISSUER_ID, name="Drill Bank")
    database_url = session_database_url()
    env = portal_env(
        database_url=database_url,
        broker_url=redis_url,
        cache_url=f"filecache://{tmp_path / 'cache'}",
        folder=tmp_path,
        **sandbox_env(d1_sandbox),
        **PROJECTOR_ONLY,
        INGEST_FOLD_BATCH=batch,
        LOG_LEVEL="WARNING",
    )
    web = cluster.web("web", env, workers=2, threads=4)
    url = f"{web}/notifications/d1/v2/issuers/{ISSUER_ID}/cards"
    steps = backlog_deliveries("set", cards, per_body=50)
    sent = copies_sent(steps)
    answers = deliver(url, steps)
    assert set(answers) == {"204"}, answers
    unfolded, copies = waiting(database_url)
    assert unfolded == len(sent) and copies > 0, (unfolded, copies)

    worker = cluster.worker("worker", env, concurrency=1)
    monitor = psycopg.connect(database_url, autocommit=True)

    def mid_set(*, after: int = 0) -> bool:
        """More than `after` orders folded, some not, and a transaction of another session
        holds written, uncommitted rows (a transaction id): the projector is inside a set."""
        folded, open_sets = monitor.execute(
            "SELECT (SELECT count(*) FROM tracking_cardorder WHERE event_count > 0), "
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL)"
        ).fetchone()
        return after < folded < cards and open_sets > 0

    try:
        # Several sets in, so that the kill lands in a set like any other.
        several_sets_in = lambda: mid_set(after=cards // 4)  # noqa: E731
        assert wait_until(several_sets_in, timeout=40, interval=0.01), cluster.log_tail("worker")
        for pid in [*cluster.children("worker"), worker.pid]:
            cluster.kill(pid)
        worker.wait(timeout=10)
        # The killed set rolled back whole: its orders wait for the next projector.
        assert wait_until(lambda: not mid_set(), timeout=10)
        folded_at_kill = monitor.execute(
            "SELECT count(*) FROM tracking_cardorder WHERE event_count > 0"
        ).fetchone()[0]
    finally:
        monitor.close()
    left, _ = waiting(database_url)
    assert 0 < left < unfolded
    # Only whole sets were committed: the one in progress left no order half folded.
    assert folded_at_kill % batch == 0, folded_at_kill
    assert left == unfolded - folded_at_kill * len(FOLD_STEPS)

    restarted = time.monotonic()
    cluster.worker("worker-2", env, concurrency=1)
    cluster.beat("beat", env)
    assert wait_until(lambda: waiting(database_url) == (0, 0), timeout=60, interval=0.5), (
        waiting(database_url),
        cluster.log_tail("worker-2"),
    )
    figures = nothing_lost_nothing_doubled(database_url, sent)
    # Every order is as the rules fold its events: each set counts its orders' waiting copies
    # before it folds them, so even the "Last message" time includes every copy sent.
    changes, fields, output = rederive_dry_run(cluster, env)
    behind, ahead = last_message_behind(database_url)
    assert changes == 0 and not fields, output
    assert behind == ahead == 0, output
    report(
        "projector-killed-mid-set",
        posts=sum(answers.values()),
        waiting_events=unfolded,
        waiting_copies=copies,
        batch=batch,
        orders_folded_at_kill=folded_at_kill,
        events_left_at_kill=left,
        refolded_s=f"{time.monotonic() - restarted:.1f}",
        **figures,
        rederive_changes=changes,
        last_message_behind=behind,
    )
