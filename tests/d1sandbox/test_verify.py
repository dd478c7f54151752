"""`verify` compares the portal's read API with the sandbox's own timeline, field by field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from d1sandbox.cli import main
from d1sandbox.feed import FeedOptions, feed_run
from d1sandbox.state import ItemKey, StateStore
from d1sandbox.verify import verify_run
from tests.d1sandbox.fakes import FakePortal, FakeReadApi
from tests.d1sandbox.folds import fold_by_arrival, fold_by_times

ISSUER = "ISSUERX001"
TOKEN = "read-api-token"
START = "2026-11-27T08:00:00.000Z"


def _item(card: str, details_status: str | None, top_status: str = "PENDING", **extra: Any):
    item: dict[str, Any] = {
        "operationId": f"op-{card}",
        "operation": "PRODUCE",
        "status": top_status,
        "startTime": START,
        "cardId": card,
    }
    details = {k: v for k, v in extra.items() if k not in {"endTime", "errorCode", "error"}}
    item.update({k: v for k, v in extra.items() if k in {"endTime", "errorCode", "error"}})
    if details_status is not None:
        item["details"] = {"status": details_status, **details}
    return item


def _shipment(status: str) -> dict:
    return {
        "carrier": "ups",
        "trackingNumber": "1Z999",
        "trackingUrl": "https://www.ups.com/track?tracknum=1Z999",
        "status": status,
        "message": "m",
    }


# card -> [(item, dropped, delivered)] in the order they happened
TRUTH = {
    "card-shipped": [
        (_item("card-shipped", "CARD_PROD_REQUESTED"), False, True),
        (_item("card-shipped", "CARD_PROD_DONE"), True, False),
        (
            _item(
                "card-shipped",
                "CARD_SHIPPED",
                "SUCCESSFUL",
                shipment=_shipment("IN_TRANSIT"),
                endTime="2026-11-27T09:00:00.000Z",
            ),
            False,
            True,
        ),
        (
            _item(
                "card-shipped",
                "CARD_SHIPPED",
                "SUCCESSFUL",
                shipment=_shipment("DELIVERED"),
                endTime="2026-11-27T10:00:00.000Z",
            ),
            True,
            False,
        ),
    ],
    "card-on-hold": [
        (_item("card-on-hold", "CARD_PROD_REQUESTED"), False, True),
        (_item("card-on-hold", "CARD_PROD_READY", productionSite="PERSO-SITE-EU-02"), False, True),
        (_item("card-on-hold", "CARD_PROD_ON_HOLD", reason="Stock"), False, True),
    ],
    "card-failed": [
        (_item("card-failed", "CARD_PROD_REQUESTED"), False, True),
        (_item("card-failed", "CARD_PROD_ONGOING"), False, True),
        (
            _item(
                "card-failed",
                "CARD_PROD_ONGOING",
                "FAILED",
                reason="Chip encoding failed",
                endTime="2026-11-27T08:30:00.000Z",
                errorCode="PERSO_MACHINE_FAULT",
                error="Personalization machine fault",
            ),
            False,
            True,
        ),
    ],
    "card-invisible": [
        (_item("card-invisible", "CARD_PROD_REQUESTED"), True, False),
    ],
}


def _portal_row(card: str, production_status: str, operation_status: str, **extra: Any) -> dict:
    return {
        "id": card,
        "issuer_id": ISSUER,
        "card_id": card,
        "operation_id": f"op-{card}",
        "operation": "PRODUCE",
        "operation_status": operation_status,
        "production_status": production_status,
        "is_terminal": production_status == "CARD_SHIPPED",
        # The read API writes times its own way; the instant is what counts.
        "start_time": "2026-11-27T08:00:00Z",
        "end_time": None,
        "error_code": "",
        "error": "",
        "reason": "",
        "shipment": None,
        "unknown_codes": [],
        "hold_code": "",
        "has_conflict": False,
        "has_unknown_status": False,
        "exception_reason": "",
        **extra,
    }


CORRECT_PORTAL = [
    _portal_row(
        "card-shipped",
        "CARD_SHIPPED",
        "SUCCESSFUL",
        end_time="2026-11-27T10:00:00+00:00",
        shipment={
            "carrier": "ups",
            "tracking_number": "1Z999",
            "tracking_url": "https://www.ups.com/track?tracknum=1Z999",
            "status": "DELIVERED",
            "normalized_status": "delivered",
            "message": "m",
        },
    ),
    _portal_row(
        "card-on-hold",
        "CARD_PROD_READY",
        "PENDING",
        production_site="PERSO-SITE-EU-02",
        unknown_codes=["CARD_PROD_ON_HOLD"],
        hold_code="CARD_PROD_ON_HOLD",
        has_unknown_status=True,
    ),
    _portal_row(
        "card-failed",
        "CARD_PROD_ONGOING",
        "FAILED",
        end_time="2026-11-27T08:30:00.000000Z",
        error_code="PERSO_MACHINE_FAULT",
        error="Personalization machine fault",
        reason="Chip encoding failed",
        is_terminal=True,  # FAILED ends the order at whatever step
    ),
    _portal_row("card-from-another-run", "CARD_PROD_REQUESTED", "PENDING"),
]


def _store_truth(path: Path, truth: dict[str, list]) -> None:
    store = StateStore(path)
    run_id, _ = store.run_start(seed=1, run_number=None, options={})
    for card, items in truth.items():
        keys = [ItemKey(ISSUER, card, f"op-{card}", step) for step in range(len(items))]
        store.items_record(
            run_id=run_id,
            happenings=[
                (key, item, dropped) for key, (item, dropped, _) in zip(keys, items, strict=True)
            ],
        )
        store.items_mark_delivered(
            keys=[key for key, (_, _, delivered) in zip(keys, items, strict=True) if delivered]
        )
    store.close()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite3"
    _store_truth(path, TRUTH)
    return path


def _verify(portal: list[dict], state_path: Path, lines: list[str] | None = None, **kw: Any):
    with FakeReadApi(results=portal, token=TOKEN, page_size=kw.pop("page_size", 500)) as api:
        report = verify_run(
            portal_url=api.url,
            token=TOKEN,
            state_path=state_path,
            out=(lines.append if lines is not None else lambda _: None),
            **kw,
        )
    return report, api


def test_a_portal_that_caught_up_passes(state_path: Path) -> None:
    lines: list[str] = []
    report, api = _verify(CORRECT_PORTAL, state_path, lines, page_size=2)

    assert report.ok, report.mismatches
    assert report.checked == 3
    assert report.invisible == [f"{ISSUER}/card-invisible/op-card-invisible"]
    assert len(api.requests) == 2, "follows the cursor's next link"
    assert "orders checked: 3" in lines
    assert "invisible orders (never seen by the portal): 1" in lines


def test_mismatches_and_missing_orders_are_reported(state_path: Path) -> None:
    portal = copy.deepcopy(CORRECT_PORTAL)
    portal[0]["shipment"]["status"] = "IN_TRANSIT"  # never reconciled the dropped update
    portal[0]["end_time"] = "2026-11-27T09:00:00Z"
    del portal[1]
    lines: list[str] = []
    report, _ = _verify(portal, state_path, lines)

    assert not report.ok
    assert report.mismatches == [
        f"{ISSUER}/card-on-hold/op-card-on-hold: missing in the portal",
        f"{ISSUER}/card-shipped/op-card-shipped: end_time: expected '2026-11-27T10:00:00.000Z', "
        "portal has '2026-11-27T09:00:00Z'",
        f"{ISSUER}/card-shipped/op-card-shipped: shipment.status: expected 'DELIVERED', "
        "portal has 'IN_TRANSIT'",
    ]
    assert sum(line.startswith("MISMATCH ") for line in lines) == 3


def test_an_unknown_code_must_not_move_the_portal_state_and_must_be_listed(
    state_path: Path,
) -> None:
    portal = copy.deepcopy(CORRECT_PORTAL)
    portal[1]["production_status"] = "CARD_PROD_ON_HOLD"
    portal[1]["unknown_codes"] = []
    report, _ = _verify(portal, state_path)

    assert report.mismatches == [
        f"{ISSUER}/card-on-hold/op-card-on-hold: production_status: expected 'CARD_PROD_READY', "
        "portal has 'CARD_PROD_ON_HOLD'",
        f"{ISSUER}/card-on-hold/op-card-on-hold: unknown_codes: expected 'CARD_PROD_ON_HOLD' "
        "among []",
    ]


def test_a_late_pending_copy_must_not_undo_a_failure(state_path: Path) -> None:
    # The portal that let the late PENDING copy of CARD_PROD_ONGOING win (issue 9, first case).
    portal = copy.deepcopy(CORRECT_PORTAL)
    portal[2].update(operation_status="PENDING", end_time=None, error_code="", error="")
    report, _ = _verify(portal, state_path)

    label = f"{ISSUER}/card-failed/op-card-failed"
    assert report.mismatches == [
        f"{label}: operation_status: expected 'FAILED', portal has 'PENDING'",
        f"{label}: end_time: expected '2026-11-27T08:30:00.000Z', portal has None",
        f"{label}: error_code: expected 'PERSO_MACHINE_FAULT', portal has ''",
        f"{label}: error: expected 'Personalization machine fault', portal has ''",
        f"{label}: exception_class: expected 'failed', portal has None",
    ]


def test_registered_orders_must_be_visible(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    _store_truth(path, {"card-invisible": TRUTH["card-invisible"]})
    quiet_report, _ = _verify([], path)
    store = StateStore(path)
    store.order_registered(
        issuer_id=ISSUER,
        card_id="card-invisible",
        operation_id="op-card-invisible",
        outcome="201",
        registered=True,
    )
    store.close()
    registered_report, _ = _verify([], path)

    # Nobody could have seen it: reported, not held against the portal.
    assert quiet_report.ok and len(quiet_report.invisible) == 1
    # The issuer told the portal about it: the portal must list it.
    assert not registered_report.ok
    assert registered_report.registered == 1
    assert registered_report.mismatches == [
        f"{ISSUER}/card-invisible/op-card-invisible: registered, but the portal has not heard of it"
    ]


def test_an_order_registered_without_its_operation_id_is_found_by_card(tmp_path: Path) -> None:
    # Placed in a file (the issuer never knew its operationId); every notification dropped;
    # the card was then ordered again, and productionStatus only tells of the new operation.
    path = tmp_path / "state.sqlite3"
    card = "card-refiled"
    store = StateStore(path)
    run_id, _ = store.run_start(seed=1, run_number=None, options={})
    first = ItemKey(ISSUER, card, "op-first", 0)
    second = ItemKey(ISSUER, card, f"op-{card}", 0)
    for key, silent in ((first, True), (second, False)):
        store.order_record(
            run_id=run_id,
            issuer_id=ISSUER,
            card_id=card,
            operation_id=key.operation_id,
            operation="PRODUCE",
            silent=silent,
        )
        store.order_registered(
            issuer_id=ISSUER,
            card_id=card,
            operation_id=key.operation_id,
            outcome="201",
            registered=True,
        )
    requested = _item(card, "CARD_PROD_REQUESTED")
    store.items_record(
        run_id=run_id,
        happenings=[
            (first, {**requested, "operationId": "op-first"}, True),
            (second, requested, False),
        ],
    )
    store.items_mark_delivered(keys=[second])
    store.close()
    newer = _portal_row(card, "CARD_PROD_REQUESTED", "PENDING")
    waiting = _portal_row(card, None, None, operation_id="", start_time=None)

    listed, _ = _verify([newer, waiting], path)
    unlisted, _ = _verify([newer], path)

    assert listed.ok and not listed.invisible
    assert listed.hidden == [f"{ISSUER}/{card}/op-first"]
    assert unlisted.invisible == [f"{ISSUER}/{card}/op-first"] and not unlisted.ok


def test_cli_exit_status_follows_the_outcome(state_path: Path) -> None:
    with FakeReadApi(results=CORRECT_PORTAL, token=TOKEN) as good:
        good_exit = main(
            ["verify", "--portal", good.url, "--token", TOKEN, "--state", str(state_path)]
        )
    with FakeReadApi(results=CORRECT_PORTAL[1:], token=TOKEN) as lagging:
        bad_exit = main(
            [
                "verify",
                "--portal",
                lagging.url,
                "--token",
                TOKEN,
                "--issuer",
                ISSUER,
                "--state",
                str(state_path),
            ]
        )
    with FakeReadApi(results=CORRECT_PORTAL, token=TOKEN) as guarded:
        refused_exit = main(
            ["verify", "--portal", guarded.url, "--token", "wrong", "--state", str(state_path)]
        )

    assert (good_exit, bad_exit, refused_exit) == (0, 1, 2)


EVERY_NEW_RATE = {
    "failed_step_rate": 0.15,
    "no_details_rate": 0.1,
    "hold_completion_rate": 0.1,
    "unknown_rate": 0.1,
    "reattempt_rate": 0.2,
    "prod_exception_rate": 0.1,
    "no_shipment_rate": 0.1,
    "update_order_rate": 0.15,
    "reissue_rate": 0.1,
    "late_copy": 0.3,
    "carrier_exception_rate": 0.1,
    "returned_rate": 0.1,
    "expired_rate": 0.05,
    "novel_word_rate": 0.2,
    "changed_copy_rate": 0.2,
    "japan_carrier_rate": 0.2,
    "offset_time_rate": 0.2,
    "zoneless_time_rate": 0.2,
    "numeric_id_rate": 0.3,
    "pair": 0.2,
}


def _fed_and_swept(tmp_path: Path, **delivery: float) -> tuple[Path, list[dict]]:
    """Feed a fake portal, then answer productionStatus for every card, as a sweep would."""
    state_path = tmp_path / "state.sqlite3"
    with FakePortal() as portal:
        feed_run(
            options=FeedOptions(
                portal_url=portal.url,
                issuer_ids=[ISSUER],
                orders=150,
                seed=21,
                epoch=datetime(2026, 11, 27, tzinfo=UTC),
                state_path=state_path,
                batch_max=4,
                **EVERY_NEW_RATE,
                **delivery,
            ),
            out=lambda _: None,
        )
    arrivals = portal.acknowledged_items()
    store = StateStore(state_path)
    cards = sorted({order.card_id for order in store.orders(issuer_ids=[ISSUER])})
    answers = [store.production_status(issuer_id=ISSUER, card_id=card) for card in cards]
    store.close()
    return state_path, arrivals + [answer for answer in answers if answer]


def test_verify_agrees_with_d1s_rule_and_catches_an_arrival_order_tie_break(
    tmp_path: Path,
) -> None:
    state_path, arrivals = _fed_and_swept(tmp_path, duplicate=0.1, reorder=0.1, drop=0.2)

    by_times, _ = _verify(fold_by_times(arrivals, ISSUER), state_path)
    by_arrival, _ = _verify(fold_by_arrival(arrivals, ISSUER), state_path)

    assert by_times.ok, by_times.mismatches[:10]
    assert by_times.checked > 120
    assert {"failed", "returned", "carrier_exception"} <= set(by_times.problems.values())
    assert by_times.hidden, "an older order whose last word was dropped cannot be recovered"
    # The same items, folded with "inside a rank the last received wins": verify objects.
    assert not by_arrival.ok
    kinds = {line.split(": ", 2)[1] for line in by_arrival.mismatches}
    assert {"operation_status", "error_code"} <= kinds, kinds


SHIPPED_AT = "2026-11-27T09:00:00.000Z"


def _carrier_update(card: str, word: str, message: str, **extra: Any) -> dict:
    shipment = {**_shipment(word), "message": message}
    return _item(card, "CARD_SHIPPED", "SUCCESSFUL", shipment=shipment, endTime=SHIPPED_AT, **extra)


# Carrier updates that tie on D1's times, a changed late copy, a hold that ended, zone-less times.
TIED_TRUTH = {
    "card-tied": [
        (_item("card-tied", "CARD_PROD_REQUESTED"), False, True),
        (_item("card-tied", "CARD_PROD_ONGOING"), False, True),
        (_item("card-tied", "CARD_PROD_ON_HOLD", reason="Stock"), False, True),
        (_item("card-tied", "CARD_PROD_DONE"), False, True),
        (_carrier_update("card-tied", "InTransit_002", "Picked up"), False, True),
        (_carrier_update("card-tied", "HeldAtCustoms", "Held"), False, True),
        (_carrier_update("card-tied", "delivered", "Left at door"), False, True),
        (_carrier_update("card-tied", "delivered", "Signed for"), False, True),
    ],
    "card-returned": [
        (_item("card-returned", "CARD_PROD_REQUESTED"), False, True),
        (_carrier_update("card-returned", "IN_TRANSIT", "Picked up"), False, True),
        (_carrier_update("card-returned", "Exception_011", "Returned to sender"), False, True),
    ],
}


def _tied_row(card: str, *, status: str, normalized: str, message: str, **extra: Any) -> dict:
    shipment = {
        "carrier": "ups",
        "tracking_number": "1Z999",
        "tracking_url": "https://www.ups.com/track?tracknum=1Z999",
        "status": status,
        "normalized_status": normalized,
        "message": message,
    }
    return _portal_row(
        card,
        "CARD_SHIPPED",
        "SUCCESSFUL",
        is_terminal=True,
        end_time=SHIPPED_AT,
        shipment=shipment,
        **extra,
    )


TIED_PORTAL = [
    _tied_row(
        "card-tied",
        status="delivered",
        normalized="delivered",
        message="Signed for",  # or "Left at door": D1's times and the class cannot tell
        unknown_codes=["CARD_PROD_ON_HOLD"],
    ),
    _tied_row(
        "card-returned", status="Exception_011", normalized="returned", message="Returned to sender"
    ),
]


@pytest.fixture
def tied_state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite3"
    _store_truth(path, TIED_TRUTH)
    return path


def test_tying_carrier_updates_are_judged_by_their_class(tied_state_path: Path) -> None:
    either = copy.deepcopy(TIED_PORTAL)
    either[0]["shipment"]["message"] = "Left at door"
    zoneless = copy.deepcopy(TIED_PORTAL)
    zoneless[1]["start_time"] = "2026-11-27T08:00:00"  # the issuer's zone, UTC by default

    for portal in (TIED_PORTAL, either, zoneless):
        report, _ = _verify(portal, tied_state_path)
        assert report.ok, report.mismatches
        assert report.problems == {f"{ISSUER}/card-returned/op-card-returned": "returned"}


def test_the_carrier_class_the_hold_and_the_exception_class_are_compared(
    tied_state_path: Path,
) -> None:
    portal = copy.deepcopy(TIED_PORTAL)
    # The portal read the novel word as the latest and flagged it; kept the ended hold open.
    portal[0]["shipment"].update(status="HeldAtCustoms", normalized_status="unknown")
    portal[0].update(hold_code="CARD_PROD_ON_HOLD", has_unknown_status=True)
    # And did not understand the return.
    portal[1]["shipment"]["normalized_status"] = "unknown"
    report, _ = _verify(portal, tied_state_path)

    tied, returned = f"{ISSUER}/card-tied/op-card-tied", f"{ISSUER}/card-returned/op-card-returned"
    assert report.mismatches == [
        f"{returned}: shipment.normalized_status: expected 'returned', portal has 'unknown'",
        f"{returned}: exception_class: expected 'returned', portal has None",
        f"{tied}: shipment.status: expected 'delivered', portal has 'HeldAtCustoms'",
        f"{tied}: shipment.normalized_status: expected 'delivered', portal has 'unknown'",
        f"{tied}: hold_code: expected None, portal has 'CARD_PROD_ON_HOLD'",
        f"{tied}: exception_class: expected None, portal has 'on_hold'",
    ]
