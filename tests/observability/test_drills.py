"""Fault drills with real processes, each bounded in time, each ending with nothing lost and
nothing doubled. docs/reliability.md lists them with their measured figures; each drill prints
its own figures on a `DRILL` line (`pytest -s -m drill` shows them).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from django.db.models import Count, Sum

from tests.observability.cluster import (
    METRICS_TOKEN,
    ThrowawayPostgres,
    ThrowawayRedis,
    feed_figure,
    portal_env,
    sandbox_feed,
    session_database_url,
    wait_until,
)
from tests.observability.conftest import sandbox_env, scrape_url, value
from tests.services.reconcile.items import body, item
from tests.services.reconcile.sandbox import sandbox_verify
from tracking.models import (
    CardOrder,
    Issuer,
    NotificationDelivery,
    OperationEvent,
    ReconcileAttempt,
)

pytestmark = [pytest.mark.postgres, pytest.mark.drill, pytest.mark.django_db(transaction=True)]

ISSUER_ID = "DRILLBANK1"


def report(name: str, **figures) -> None:
    print(f"DRILL {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def verified(output: str, orders: int) -> bool:
    """No mismatch, and every order the feed made is accounted for by verify."""
    accounted = sum(
        feed_figure(output, label)
        for label in (
            "orders checked",
            "invisible orders (never seen by the portal)",
            "hidden by a newer order of the card (D1's last word about them was dropped)",
        )
    )
    return "mismatches: 0" in output and accounted == orders


def post_like_d1(url: str, payload: dict, *, attempts: int = 20) -> list[str]:
    """POST until a 2xx, retrying 5xx and broken connections with backoff, as D1 does."""
    answers = []
    for attempt in range(attempts):
        try:
            status = requests.post(url, json=payload, timeout=30).status_code
            answers.append(str(status))
            if status < 300:
                return answers
            assert status >= 500, answers
        except requests.ConnectionError:
            answers.append("connection-error")
        time.sleep(min(0.2 * 2**attempt, 2))
    raise AssertionError(f"never accepted: {answers}")


@pytest.fixture
def drill_env(tmp_path, d1_sandbox, redis_url):
    """The environment of portal processes on this session's test database and Redis."""
    Issuer.objects.create(issuer_id=ISSUER_ID, name="Drill Bank")
    return portal_env(
        database_url=session_database_url(),
        broker_url=redis_url,
        cache_url=redis_url.rsplit("/", 1)[0] + "/5",
        folder=tmp_path,
        **sandbox_env(d1_sandbox),
    )


# ---------------------------------------------------------------------------- PostgreSQL away


def portal_on_throwaway_postgres(
    postgres: ThrowawayPostgres, *, cluster, tmp_path, d1_sandbox, redis_url, **settings
) -> tuple[str, dict]:
    """A migrated portal database with the drill's issuer on `postgres` (which a drill may stop),
    and the environment of portal processes on it: its URL and that environment."""
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE portal")
    database_url = postgres.url.rsplit("/", 1)[0] + "/portal"
    env = portal_env(
        database_url=database_url,
        broker_url=redis_url,
        cache_url=f"filecache://{tmp_path / 'cache'}",
        folder=tmp_path,
        **sandbox_env(d1_sandbox),
        **settings,
    )
    cluster.manage(env, "migrate", "--no-input", "-v", "0")
    cluster.manage(env, "create_issuer", ISSUER_ID, "--name", "Drill Bank")
    return database_url, env


def test_postgres_stopped_while_d1_posts(tmp_path, cluster, d1_sandbox, redis_url):
    orders = 30
    postgres = ThrowawayPostgres()
    try:
        database_url, env = portal_on_throwaway_postgres(
            postgres, cluster=cluster, tmp_path=tmp_path, d1_sandbox=d1_sandbox, redis_url=redis_url
        )
        cluster.manage(
            env, "ensure_staff_user", "verifier", "--password", "drill-only-pass", "--superuser"
        )
        token = cluster.manage(env, "create_api_token", "verifier").strip().removeprefix("token=")
        web = cluster.web("web", env, workers=2, threads=2)
        truth = d1_sandbox.state_path
        feed = sandbox_feed(
            cluster,
            name="feed",
            portal_url=web,
            issuer_id=ISSUER_ID,
            state_path=truth,
            seed=41,
            orders=orders,
            env=env,
            extra=(
                *("--drop", "0", "--duplicate", "0.1", "--reorder", "0.1"),
                *("--rate", "40", "--concurrency", "2", "--max-retries", "12"),
                *("--backoff-base", "0.3", "--backoff-cap", "2", "--timeout", "5"),
            ),
            background=True,
        )
        time.sleep(2)  # the feed is under way
        outage_started = time.monotonic()
        postgres.stop()
        # While it is away: not ready, and the counters are still served.
        ready = requests.get(f"{web}/readyz", timeout=10)
        during = requests.get(
            f"{web}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
        )
        time.sleep(max(3 - (time.monotonic() - outage_started), 0))
        postgres.start()
        assert ready.status_code == 503 and "database: fail" in ready.text
        assert during.status_code == 200 and value(during.text, "portal_database_up") == 0
        outage = time.monotonic() - outage_started
        assert feed.wait(timeout=120) == 0, cluster.log_tail("feed")
        output = cluster.log_text("feed")
        answers = output.split("answers: ", 1)[1].splitlines()[0]
        assert "204=" in answers and any(code in answers for code in ("500=", "503=")), answers

        code, verify_output = sandbox_verify(portal_url=web, token=token, state_path=truth, env=env)
        assert code == 0 and verified(verify_output, orders), verify_output
        with psycopg.connect(database_url) as connection:
            events, received = connection.execute(
                "SELECT count(*), sum(times_received) FROM tracking_operationevent"
            ).fetchone()
            unapplied = connection.execute(
                "SELECT count(*) FROM tracking_operationevent WHERE applied_at IS NULL"
            ).fetchone()[0]
        # Each distinct notification D1 saw acknowledged is stored exactly once, and applied.
        assert events == feed_figure(output, "distinct delivered")
        assert received >= feed_figure(output, "notifications sent")
        assert unapplied == 0
        report(
            "postgres-stopped",
            outage_s=f"{outage:.1f}",
            answers=answers.replace(", ", " "),
            retried=feed_figure(output, "retried"),
            events=events,
            distinct_delivered=feed_figure(output, "distinct delivered"),
            times_received=received,
            sent=feed_figure(output, "notifications sent"),
        )
    finally:
        cluster.stop_all()
        postgres.destroy()


# ---------------------------------------------------------------------------- killed processes


def test_gunicorn_worker_killed_mid_request(cluster, drill_env):
    web = cluster.web("web", drill_env, workers=1, threads=2)
    url = f"{web}/notifications/d1/v2/issuers/{ISSUER_ID}/cards"
    assert post_like_d1(url, body(item("kill-1", "CARD_PROD_REQUESTED"))) == ["204"]
    order = CardOrder.objects.get(card_id="kill-1")
    worker_before = cluster.children("web")

    # Hold the order's row lock, so the next POST is certainly in the middle of its request
    # (inside the ingest transaction) when its worker dies.
    with psycopg.connect(session_database_url()) as blocker:
        blocker.execute("SELECT id FROM tracking_cardorder WHERE id = %s FOR UPDATE", [order.pk])
        answers: list[str] = []
        sender = threading.Thread(
            target=lambda: answers.extend(post_like_d1(url, body(item("kill-1", "DATA_PREPARED"))))
        )
        sender.start()

        def waiting_on_the_lock() -> bool:
            # Its own connection: pg_stat_activity is a snapshot per transaction.
            with psycopg.connect(session_database_url(), autocommit=True) as monitor:
                row = monitor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                ).fetchone()
            return row[0] > 0

        assert wait_until(waiting_on_the_lock, timeout=20)
        for pid in worker_before:
            cluster.kill(pid)
        time.sleep(0.5)
        blocker.rollback()
    sender.join(timeout=60)

    assert answers[0] == "connection-error" and answers[-1] == "204", answers
    assert wait_until(lambda: len(cluster.children("web")) == 1, timeout=20)
    assert set(cluster.children("web")).isdisjoint(worker_before)
    order.refresh_from_db()
    assert order.production_status == "DATA_PREPARED"
    # One event: nothing doubled.
    prepared = OperationEvent.objects.get(card_id="kill-1", production_status="DATA_PREPARED")
    deliveries = NotificationDelivery.objects.filter(issuer__issuer_id=ISSUER_ID).count()
    # The killed request either rolled back, delivery row and all, or committed: the lock it
    # waited on is taken by the foreign-key check at COMMIT (Django's are deferred), and a COMMIT
    # the server has begun finishes without its client. Either way D1's retry found the item
    # stored once, and each delivery that kept it is counted once.
    assert deliveries in (2, 3), deliveries
    assert prepared.times_received == deliveries - 1 and prepared.applied_at is not None
    report(
        "gunicorn-worker-killed",
        answers=" ".join(answers),
        events=2,
        times_received=prepared.times_received,
    )


def test_celery_worker_killed_in_the_middle_of_a_reconcile(cluster, drill_env, d1_sandbox):
    from config.celery_app import app
    from tracking.services.reconcile import reconcile_order_task

    steps = [item("kill-2", "CARD_PROD_REQUESTED"), item("kill-2", "DATA_PREPARED")]
    d1_sandbox.truth_record(issuer_id=ISSUER_ID, items=steps)
    web = cluster.web("web", drill_env, workers=1, threads=2)
    url = f"{web}/notifications/d1/v2/issuers/{ISSUER_ID}/cards"
    assert post_like_d1(url, body(steps[0])) == ["204"]
    order = CardOrder.objects.get(card_id="kill-2")
    d1_sandbox.faults(latency_ms=4000)  # D1 is slow: the task is mid-call for seconds
    worker = cluster.worker("worker", drill_env, concurrency=1)
    assert wait_until(lambda: "ready" in cluster.log_text("worker"), timeout=30)

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        with app.connection_for_write(drill_env["CELERY_BROKER_URL"]) as connection:
            reconcile_order_task.apply_async(
                args=[order.pk],
                kwargs={"trigger": "staff"},
                queue=drill_env["CELERY_TASK_DEFAULT_QUEUE"],
                connection=connection,
            )
    finally:
        app.conf.task_always_eager = eager

    def calling_d1() -> bool:
        return any(
            '"task_started"' in line and "tracking.reconcile_order" in line
            for line in cluster.log_text("worker").splitlines()
        )

    assert wait_until(calling_d1, timeout=30)
    time.sleep(1)  # inside the 4 s D1 call
    children = cluster.children("worker")
    assert children and worker.poll() is None
    for pid in children:
        cluster.kill(pid)
    d1_sandbox.faults(latency_ms=0)

    assert wait_until(lambda: ReconcileAttempt.objects.filter(order=order).exists(), timeout=45)
    time.sleep(1)
    attempts = list(ReconcileAttempt.objects.filter(order=order).values_list("outcome", flat=True))
    order.refresh_from_db()
    assert attempts == ["changed"]
    assert order.production_status == "DATA_PREPARED"
    assert OperationEvent.objects.get(card_id="kill-2", production_status="DATA_PREPARED")
    lost = "WorkerLostError" in cluster.log_text("worker") or "exited" in cluster.log_text("worker")
    report("celery-worker-killed", attempts=len(attempts), outcome=attempts[0], worker_lost=lost)


# ---------------------------------------------------------------------------- Redis away


def test_redis_stopped_webhooks_still_answer_and_reconciliation_resumes(
    tmp_path, cluster, d1_sandbox, read_token
):
    orders = 20
    Issuer.objects.create(issuer_id=ISSUER_ID, name="Drill Bank")
    redis = ThrowawayRedis(cluster)
    env = portal_env(
        database_url=session_database_url(),
        broker_url=f"{redis.url}/0",
        cache_url=f"{redis.url}/1",
        folder=tmp_path,
        **sandbox_env(d1_sandbox),
    )
    web = cluster.web("web", env, workers=2, threads=2)
    cluster.worker("worker", env, concurrency=2)
    cluster.beat("beat", env)
    # Redis goes away once both are running (connected, a first tick sent), not while they boot.
    assert wait_until(lambda: " ready." in cluster.log_text("worker"), timeout=60)
    assert wait_until(lambda: "Sending due task" in cluster.log_text("beat"), timeout=60)
    redis.stop()
    stopped_at = time.monotonic()

    truth = d1_sandbox.state_path
    feed = sandbox_feed(
        cluster,
        name="feed",
        portal_url=web,
        issuer_id=ISSUER_ID,
        state_path=truth,
        seed=43,
        orders=orders,
        env=env,
        extra=("--drop", "0.25", "--duplicate", "0.1", "--concurrency", "2"),
    )
    assert feed.returncode == 0, feed.stdout + feed.stderr
    answers = feed.stdout.split("answers: ", 1)[1].splitlines()[0]
    assert answers.startswith("204=") and "," not in answers, answers  # every POST: 204
    assert OperationEvent.objects.filter(applied_at__isnull=True).count() == 0  # derived
    flagged = CardOrder.objects.filter(needs_reconcile=True).count()
    attempts_while_down = ReconcileAttempt.objects.count()
    time.sleep(3)  # a few beat ticks fail to reach the broker
    assert ReconcileAttempt.objects.count() == attempts_while_down

    redis.start()
    down_for = time.monotonic() - stopped_at
    returned = time.monotonic()

    last_verify: dict[str, str] = {}

    def converged() -> bool:
        code, output = sandbox_verify(portal_url=web, token=read_token, state_path=truth, env=env)
        last_verify["output"] = output
        return code == 0 and verified(output, orders)

    assert wait_until(converged, timeout=60, interval=2), last_verify.get("output")
    report(
        "redis-stopped",
        down_s=f"{down_for:.1f}",
        answers=answers,
        dropped=feed_figure(feed.stdout, "dropped"),
        flagged_while_down=flagged,
        attempts_while_down=attempts_while_down,
        attempts_after=ReconcileAttempt.objects.count(),
        converged_s=f"{time.monotonic() - returned:.1f}",
    )


def test_redis_lost_while_a_reconcile_is_in_flight_the_worker_lives_on(
    tmp_path, cluster, d1_sandbox
):
    from config.celery_app import app
    from tracking.services.reconcile import reconcile_order_task

    Issuer.objects.create(issuer_id=ISSUER_ID, name="Drill Bank")
    redis = ThrowawayRedis(cluster)
    env = portal_env(
        database_url=session_database_url(),
        broker_url=f"{redis.url}/0",
        cache_url=f"{redis.url}/1",
        folder=tmp_path,
        **sandbox_env(d1_sandbox),
    )
    cards = ("flight-1", "flight-2")
    for card in cards:
        steps = [item(card, "CARD_PROD_REQUESTED"), item(card, "DATA_PREPARED")]
        d1_sandbox.truth_record(issuer_id=ISSUER_ID, items=steps)
    web = cluster.web("web", env, workers=1, threads=2)
    url = f"{web}/notifications/d1/v2/issuers/{ISSUER_ID}/cards"
    for card in cards:
        assert post_like_d1(url, body(item(card, "CARD_PROD_REQUESTED"))) == ["204"]
    first, second = (CardOrder.objects.get(card_id=card) for card in cards)
    d1_sandbox.faults(latency_ms=2000)  # D1 is slow: the task is mid-call, unacked, for seconds
    worker = cluster.worker("worker", env, concurrency=1)
    assert wait_until(lambda: " ready." in cluster.log_text("worker"), timeout=60)

    def enqueue(order: CardOrder) -> None:
        eager = app.conf.task_always_eager
        app.conf.task_always_eager = False
        try:
            with app.connection_for_write(env["CELERY_BROKER_URL"]) as connection:
                reconcile_order_task.apply_async(
                    args=[order.pk],
                    kwargs={"trigger": "staff"},
                    queue=env["CELERY_TASK_DEFAULT_QUEUE"],
                    connection=connection,
                )
        finally:
            app.conf.task_always_eager = eager

    enqueue(first)
    assert wait_until(
        lambda: (
            '"task_started"' in cluster.log_text("worker")
            and "tracking.reconcile_order" in cluster.log_text("worker")
        ),
        timeout=30,
    )
    # While the task waits for D1, its message not yet acknowledged; it ends (and fails to
    # acknowledge) while Redis is away.
    redis.stop()
    time.sleep(6)
    redis.start()
    d1_sandbox.faults(latency_ms=0)

    # The worker survived the lost broker and takes new work once Redis is back.
    time.sleep(2)
    assert worker.poll() is None, cluster.log_tail("worker")
    enqueue(second)
    assert wait_until(
        lambda: ReconcileAttempt.objects.filter(order=second).exists(), timeout=60, interval=1
    ), cluster.log_tail("worker")
    assert worker.poll() is None
    second.refresh_from_db()
    assert second.production_status == "DATA_PREPARED"
    report(
        "redis-lost-mid-task",
        worker_alive=worker.poll() is None,
        unrestored_logged="tasks in flight" in cluster.log_text("worker"),
        first_attempts=ReconcileAttempt.objects.filter(order=first).count(),
    )


# ---------------------------------------------------------------------------- two beats


def test_two_beats_at_once_reconcile_each_order_once(cluster, drill_env, d1_sandbox):
    orders = 20
    store = d1_sandbox
    web = cluster.web("web", drill_env, workers=1, threads=2)
    url = f"{web}/notifications/d1/v2/issuers/{ISSUER_ID}/cards"
    for n in range(orders):
        card = f"beat-{n}"
        store.truth_record(
            issuer_id=ISSUER_ID,
            items=[item(card, "CARD_PROD_REQUESTED"), item(card, "DATA_EXCEPTION")],
        )
        assert post_like_d1(url, body(item(card, "CARD_PROD_REQUESTED"))) == ["204"]
    cluster.worker("worker", drill_env, concurrency=2)
    cluster.beat("beat-1", drill_env)
    cluster.beat("beat-2", drill_env)

    def all_reconciled() -> bool:
        return CardOrder.objects.filter(production_status="DATA_EXCEPTION").count() == orders

    assert wait_until(all_reconciled, timeout=60)
    time.sleep(4)  # several more sweeps from both beats

    per_order = dict(ReconcileAttempt.objects.values_list("order__card_id").annotate(n=Count("id")))
    sweeps = {
        name: cluster.log_text(name).count("Sending due task reconcile-sweep")
        for name in ("beat-1", "beat-2")
    }
    assert len(per_order) == orders and set(per_order.values()) == {1}, per_order
    assert min(sweeps.values()) >= 3, sweeps
    report(
        "two-beats",
        orders=orders,
        attempts=sum(per_order.values()),
        sweeps_sent=f"{sweeps['beat-1']}+{sweeps['beat-2']}",
    )


# ---------------------------------------------------------------------------- storm


def test_storm_of_2000_copies_from_16_connections(cluster, drill_env):
    connections, copies = 16, 2000
    # Info lines for 2,000 requests only slow the drill down; warnings and errors still show.
    web = cluster.web("web", {**drill_env, "LOG_LEVEL": "WARNING"}, workers=2, threads=8)
    url = f"{web}/notifications/d1/v2/issuers/{ISSUER_ID}/cards"
    payload = json.dumps(body(item("storm-1", "CARD_PROD_REQUESTED")))
    before = scrape_url(web)

    def send(count: int) -> list[int]:
        with requests.Session() as session:
            return [
                session.post(
                    url,
                    data=payload,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                ).status_code
                for _ in range(count)
            ]

    started = time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        statuses = [
            s for batch in pool.map(send, [copies // connections] * connections) for s in batch
        ]
    elapsed = time.monotonic() - started

    assert len(statuses) == copies and set(statuses) == {204}
    event = OperationEvent.objects.get(card_id="storm-1")
    assert event.times_received == copies
    deliveries = NotificationDelivery.objects.filter(issuer__issuer_id=ISSUER_ID).aggregate(
        n=Count("id"), new=Sum("new_count"), duplicate=Sum("duplicate_count")
    )
    assert deliveries == {"n": copies, "new": 1, "duplicate": copies - 1}
    after = scrape_url(web)

    def delta(outcome: str) -> float:
        return value(after, "portal_d1_notification_items_total", outcome=outcome) - value(
            before, "portal_d1_notification_items_total", outcome=outcome
        )

    assert (delta("new"), delta("duplicate")) == (1, copies - 1)
    report(
        "storm",
        posts=copies,
        connections=connections,
        events=1,
        times_received=event.times_received,
        seconds=f"{elapsed:.1f}",
        per_second=int(copies / elapsed),
    )
