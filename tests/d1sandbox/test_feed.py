"""`feed` over real HTTP: seeded, and the drop/duplicate/reorder/batch rates do what they say."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path

import pytest

from d1sandbox.feed import FeedOptions, FeedSummary, feed_run
from d1sandbox.state import StateStore
from d1sandbox.testing import PROJECT_ROOT
from d1sandbox.vocabulary import time_read
from tests.d1sandbox.fakes import FakePortal, PortalBehaviour

EPOCH = datetime(2026, 11, 27, tzinfo=UTC)
CORRELATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NORMAL_STEPS = {"DATA_PREPARED", "CARD_PROD_READY", "CARD_PROD_ONGOING", "CARD_PROD_DONE"}


def _run(portal: FakePortal, state_path: Path, **overrides) -> FeedSummary:
    options = {
        "portal_url": portal.url,
        "issuer_ids": ["ISSUERX001"],
        "orders": 40,
        "seed": 11,
        "epoch": EPOCH,
        "state_path": state_path,
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        **overrides,
    }
    return feed_run(options=FeedOptions(**options), out=lambda line: None)


def _item_id(item: dict) -> str:
    return json.dumps(item, sort_keys=True)


def _wire(portal: FakePortal) -> list[tuple[str, str, dict]]:
    return [(p.path, p.headers["x-correlation-id"], p.body) for p in portal.posts]


def test_same_seed_and_flags_send_the_same_notifications(tmp_path: Path) -> None:
    flags = {"duplicate": 0.2, "reorder": 0.2, "drop": 0.1, "batch_max": 4}
    with FakePortal() as first, FakePortal() as second, FakePortal() as other_seed:
        _run(first, tmp_path / "a.sqlite3", **flags)
        _run(second, tmp_path / "b.sqlite3", **flags)
        _run(other_seed, tmp_path / "c.sqlite3", seed=12, **flags)

    assert _wire(first) == _wire(second)
    assert _wire(first) != _wire(other_seed)


def test_rates_produce_what_they_say(tmp_path: Path) -> None:
    state_path = tmp_path / "state.sqlite3"
    with FakePortal() as portal:
        summary = _run(
            portal,
            state_path,
            issuer_ids=["ISSUERX001", "ISSUERX002"],
            orders=300,
            duplicate=0.1,
            reorder=0.15,
            drop=0.1,
            batch_max=4,
            pair=0,  # two items of one operation in one POST: test_two_items_of_one_operation...
        )

    store = StateStore(state_path)
    truth = list(store.orders(issuer_ids=["ISSUERX001", "ISSUERX002"]))
    store.close()
    truth_items = [t for order in truth for t in order.items]
    copies = portal.acknowledged_items()
    received = Counter(_item_id(item) for item in copies)

    # Every generated item is in the truth; dropped ones never reach the portal, others do.
    assert summary.generated == len(truth_items) > 1500
    dropped = {_item_id(t.item) for t in truth_items if t.dropped}
    assert len(dropped) == summary.dropped
    assert 0.07 < summary.dropped / summary.generated < 0.13
    assert set(received) == {_item_id(t.item) for t in truth_items} - dropped
    assert all(t.delivered_count == received[_item_id(t.item)] for t in truth_items)

    # Duplicates and late copies: extra copies on the wire, exactly as many as the summary says.
    extra_copies = sum(count - 1 for count in received.values())
    assert extra_copies == summary.duplicated + summary.late_copies
    assert summary.late_copies > 0
    assert 0.07 < summary.duplicated / len(received) < 0.13
    assert summary.sent == len(copies)
    assert summary.delivered == len(received)

    # Reordering: held-back items arrive after a later step of their card.
    first_arrival: dict[str, int] = {}
    for position, item in enumerate(copies):
        first_arrival.setdefault(_item_id(item), position)
    overtaken = 0
    for order in truth:
        arrivals = [first_arrival.get(_item_id(t.item)) for t in order.items]
        for index, arrival in enumerate(arrivals):
            later = [a for a in arrivals[index + 1 :] if a is not None]
            if arrival is not None and later and min(later) < arrival:
                overtaken += 1
    assert 0.8 * summary.reordered <= overtaken <= summary.reordered
    assert 0.1 < summary.reordered / (summary.generated - summary.dropped) < 0.2

    # Batches: at most batch_max operations, one issuer per POST, distinct cards except twins.
    for post in portal.posts:
        operations = post.body["operations"]
        issuer_in_path = post.path.split("/")[5]
        assert 1 <= len(operations) <= 4
        assert post.headers["content-type"] == "application/json"
        assert CORRELATION_ID.match(post.headers["x-correlation-id"])
        assert issuer_in_path in {"ISSUERX001", "ISSUERX002"}
        cards = Counter(op["cardId"] for op in operations)
        for card, count in cards.items():
            if count > 1:
                twins = [op for op in operations if op["cardId"] == card]
                assert count == 2 and twins[0] == twins[1], "only a same-batch copy shares a POST"
    assert any(len(post.body["operations"]) > 1 for post in portal.posts)
    assert summary.posts == len(portal.posts)


def test_without_faults_nothing_is_reordered_dropped_or_repeated(tmp_path: Path) -> None:
    with FakePortal() as portal:
        summary = _run(
            portal,
            tmp_path / "state.sqlite3",
            duplicate=0,
            reorder=0,
            drop=0,
            late_copy=0,
            failed_step_rate=0,
            pair=0,
        )

    copies = portal.acknowledged_items()
    assert len(copies) == summary.generated == summary.delivered
    by_card: dict[str, list[dict]] = {}
    for item in copies:
        by_card.setdefault(item["cardId"], []).append(item)
    for items in by_card.values():
        statuses = [item["details"].get("status") for item in items]
        assert statuses[0] in {"CARD_PROD_REQUESTED", "CARD_SHIPPED", "CARD_RETURNED"}


def test_retries_as_d1_does_and_does_not_retry_refusals(tmp_path: Path) -> None:
    behaviour = PortalBehaviour(script=deque([503, 429, 500, 400, 413]))
    with FakePortal(behaviour) as portal:
        summary = _run(
            portal,
            tmp_path / "state.sqlite3",
            orders=5,
            duplicate=0,
            reorder=0,
            drop=0,
            batch_max=1,
        )

    statuses = [post.status for post in portal.posts]
    assert statuses[:5] == [503, 429, 500, 400, 413]
    # 503, 429 and 500 hit the first POST, which then got through; 400 and 413 are refusals.
    assert portal.posts[0].body == portal.posts[3].body == portal.posts[1].body
    assert portal.posts[4].body != portal.posts[3].body
    assert summary.retried == 3
    assert summary.refused_posts == 2
    assert summary.delivered == summary.generated - 2


def test_gives_up_after_max_retries(tmp_path: Path) -> None:
    behaviour = PortalBehaviour(default_status=502)
    with FakePortal(behaviour) as portal:
        summary = _run(portal, tmp_path / "state.sqlite3", orders=1, max_retries=2, batch_max=1)

    assert summary.failed_posts == summary.posts
    assert len(portal.posts) == 3 * summary.posts
    assert summary.delivered == 0


def test_bearer_token_from_the_portal_is_used_and_renewed_on_401(tmp_path: Path) -> None:
    behaviour = PortalBehaviour(client_id="d1-outbound", client_secret="s3cret", revoke_at_post=4)
    with FakePortal(behaviour) as portal:
        summary = _run(
            portal,
            tmp_path / "state.sqlite3",
            orders=3,
            client_id="d1-outbound",
            client_secret="s3cret",
            duplicate=0,
            drop=0,
            reorder=0,
        )

    authorizations = [post.headers["authorization"] for post in portal.posts]
    statuses = [post.status for post in portal.posts]
    assert authorizations[:4] == ["Bearer portal-token-1"] * 4
    assert statuses[:5] == [204, 204, 204, 401, 204]
    assert set(authorizations[4:]) == {"Bearer portal-token-2"}
    assert summary.token_requests == behaviour.token_requests == 2
    assert summary.retried == 1
    assert summary.delivered == summary.generated


def test_wrong_portal_credentials_end_in_failed_posts(tmp_path: Path) -> None:
    behaviour = PortalBehaviour(client_id="d1-outbound", client_secret="s3cret")
    with FakePortal(behaviour) as portal:
        summary = _run(
            portal,
            tmp_path / "state.sqlite3",
            orders=1,
            client_id="d1-outbound",
            client_secret="wrong",
            max_retries=1,
            batch_max=10,
        )

    assert portal.posts == []
    assert summary.delivered == 0
    assert summary.failed_posts == summary.posts


def test_second_run_of_a_seed_gets_new_ids(tmp_path: Path) -> None:
    state_path = tmp_path / "state.sqlite3"
    with FakePortal() as portal:
        first = _run(portal, state_path, orders=3)
        second = _run(portal, state_path, orders=3)

    assert (first.run_number, second.run_number) == (1, 2)
    cards = {item["cardId"] for item in portal.acknowledged_items()}
    assert {card.split("-")[2] for card in cards} == {"r1", "r2"}


def test_late_pending_copies_arrive_after_the_completion(tmp_path: Path) -> None:
    with FakePortal() as portal:
        summary = _run(
            portal,
            tmp_path / "state.sqlite3",
            orders=30,
            standalone_rate=0,
            failed_step_rate=0.5,
            late_copy=1.0,
            duplicate=0,
            reorder=0,
            drop=0,
        )

    by_order: dict[str, list[dict]] = {}
    for item in portal.acknowledged_items():
        by_order.setdefault(item["operationId"], []).append(item)
    completions = 0
    for items in by_order.values():
        completed = [i for i, item in enumerate(items) if item.get("endTime")]
        if not completed or items[0]["operation"] != "PRODUCE":
            continue
        completions += 1
        late = items[-1]
        # After the order's last word comes an earlier PENDING item, sent again.
        assert late["status"] == "PENDING" and "endTime" not in late
        assert items.count(late) == 2
        failed = items[completed[0]]
        failed_step = (failed.get("details") or {}).get("status")
        if failed["status"] == "FAILED" and failed_step in NORMAL_STEPS:
            assert late["details"]["status"] == failed_step
    assert completions > 20
    assert summary.late_copies == completions


def test_register_places_each_order_before_d1_speaks_about_it(tmp_path: Path) -> None:
    behaviour = PortalBehaviour(registration_script=deque([503, 429]))
    state_path = tmp_path / "state.sqlite3"
    with FakePortal(behaviour) as portal:
        summary = _run(
            portal,
            state_path,
            orders=60,
            register=True,
            register_token="register-token",
            silent_rate=0.2,
            reissue_rate=0.2,
            drop=0.1,
        )

    store = StateStore(state_path)
    truth = [o for o in store.orders(issuer_ids=["ISSUERX001"]) if o.operation == "PRODUCE"]
    store.close()
    registered = [body for status, body in portal.registrations if status == 201]
    # The two scripted answers were retried; every PRODUCE order is registered once.
    assert [status for status, _ in portal.registrations[:3]] == [503, 429, 201]
    assert summary.registered_new == len(registered) == len(truth)
    assert summary.registration_refused == summary.registration_failed == 0
    assert all(order.registered for order in truth)
    produce_cards = {order.card_id for order in truth}
    first_arrival: dict[str, str] = {}
    for kind, card in portal.arrivals:
        first_arrival.setdefault(card, kind)
    assert {first_arrival[card] for card in produce_cards} == {"register"}
    # Silent orders are registered, and D1 never says a word about them.
    silent = [order for order in truth if order.silent]
    notified = {item["operationId"] for item in portal.acknowledged_items()}
    assert silent and all(order.operation_id not in notified for order in silent)
    # A re-order of a card registers its own operation.
    cards = [body["card_id"] for body in registered]
    assert len(cards) > len(set(cards))


def test_with_registration_d1s_times_come_after_the_registrations(tmp_path: Path) -> None:
    # The issuer registers an order when it places it; D1 cannot have begun it a day before.
    started = datetime.now(UTC).replace(microsecond=0)
    with FakePortal() as portal:
        _run(
            portal,
            tmp_path / "state.sqlite3",
            orders=10,
            epoch=None,
            register=True,
            register_token="register-token",
        )
    start_times = [
        time_read(item["startTime"])
        for item in portal.acknowledged_items()
        if item.get("startTime")
    ]
    assert start_times and min(start_times) >= started


def test_refused_registrations_are_counted_and_the_feed_goes_on(tmp_path: Path) -> None:
    with FakePortal() as portal:
        summary = _run(
            portal,
            tmp_path / "state.sqlite3",
            orders=5,
            standalone_rate=0,
            drop=0,
            register=True,
            register_token="wrong",
        )

    assert summary.registration_refused == 5
    assert summary.delivered == summary.generated


def _feed_command(portal_url: str, state_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "d1sandbox",
        "feed",
        "--portal",
        portal_url,
        "--issuer",
        "ISSUERX001",
        "--state",
        str(state_path),
        "--log-level",
        "WARNING",
        *extra,
    ]


def test_cli_runs_a_finite_feed_and_prints_the_summary(tmp_path: Path) -> None:
    with FakePortal() as portal:
        result = subprocess.run(
            _feed_command(
                portal.url,
                tmp_path / "state.sqlite3",
                "--orders",
                "10",
                "--seed",
                "5",
                "--duplicate",
                "0.1",
                "--reorder",
                "0.1",
                "--drop",
                "0.1",
                "--batch-max",
                "3",
            ),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 0, result.stderr
    for label in ("orders:", "generated:", "sent:", "duplicated:", "reordered:", "dropped:"):
        assert label in result.stdout
    assert "POSTs:" in result.stdout
    assert len(portal.posts) > 0


@pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_continuous_feed_runs_until_interrupted(tmp_path: Path, stop_signal: int) -> None:
    with FakePortal() as portal:
        process = subprocess.Popen(
            _feed_command(
                portal.url,
                tmp_path / "state.sqlite3",
                "--continuous",
                "--orders",
                "5",
                "--time-scale",
                "0.01",
            ),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while len(portal.posts) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=20)

    assert process.returncode == 0, stderr
    assert "interrupted" in stdout
    assert "POSTs:" in stdout
    cards = {item["cardId"] for item in portal.acknowledged_items()}
    assert len(cards) > 5, "finished orders are replaced by new ones"


def test_two_items_of_one_operation_travel_in_one_post(tmp_path: Path) -> None:
    with FakePortal() as portal:
        summary = _run(
            portal,
            tmp_path / "state.sqlite3",
            orders=30,
            duplicate=0,
            reorder=0,
            drop=0,
            late_copy=0,
            failed_step_rate=0,
            pair=0.5,
        )

    pairs = []
    for post in portal.posts:
        by_operation: dict[str, list[dict]] = {}
        for item in post.body["operations"]:
            by_operation.setdefault(item["operationId"], []).append(item)
        pairs += [items for items in by_operation.values() if len(items) == 2]
    assert summary.paired > 5 and len(pairs) == summary.paired
    assert all(first != second for first, second in pairs), "two different items, not a copy"
    # Nothing is lost or repeated by travelling together.
    assert len(portal.acknowledged_items()) == summary.generated == summary.delivered
