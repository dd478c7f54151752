"""`verify` compares the truth with the portal's read API and reports every difference."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from d1sandbox.cli import main
from d1sandbox.state import ItemKey, StateStore
from d1sandbox.verify import verify_run
from tests.d1sandbox.fakes import FakeReadApi

ISSUER = "ISSUERX001"
TOKEN = "read-api-token"


def _item(card: str, details_status: str, top_status: str = "PENDING", **details: Any) -> dict:
    return {
        "operationId": f"op-{card}",
        "operation": "PRODUCE",
        "status": top_status,
        "startTime": "2026-11-27T08:00:00.000Z",
        "cardId": card,
        "details": {"status": details_status, **details},
    }


def _shipment(status: str) -> dict:
    return {
        "carrier": "ups",
        "trackingNumber": "1Z999",
        "trackingUrl": "https://www.ups.com/track?tracknum=1Z999",
        "status": status,
        "message": "m",
    }


# card -> [(item, dropped, delivered)]
TRUTH = {
    "card-shipped": [
        (_item("card-shipped", "CARD_PROD_REQUESTED"), False, True),
        (_item("card-shipped", "CARD_PROD_DONE"), True, False),
        (
            _item("card-shipped", "CARD_SHIPPED", "SUCCESSFUL", shipment=_shipment("IN_TRANSIT")),
            False,
            True,
        ),
        (
            _item("card-shipped", "CARD_SHIPPED", "SUCCESSFUL", shipment=_shipment("DELIVERED")),
            True,
            False,
        ),
    ],
    "card-on-hold": [
        (_item("card-on-hold", "CARD_PROD_REQUESTED"), False, True),
        (_item("card-on-hold", "CARD_PROD_READY"), False, True),
        (_item("card-on-hold", "CARD_PROD_ON_HOLD", reason="Stock"), False, True),
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
        "shipment": None,
        **extra,
    }


CORRECT_PORTAL = [
    _portal_row(
        "card-shipped",
        "CARD_SHIPPED",
        "SUCCESSFUL",
        shipment={
            "carrier": "ups",
            "tracking_number": "1Z999",
            "tracking_url": "https://www.ups.com/track?tracknum=1Z999",
            "status": "DELIVERED",
            "message": "m",
        },
    ),
    _portal_row("card-on-hold", "CARD_PROD_READY", "PENDING"),
    _portal_row("card-from-another-run", "CARD_PROD_REQUESTED", "PENDING"),
]


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite3"
    store = StateStore(path)
    run_id, _ = store.run_start(seed=1, run_number=None, options={})
    for card, items in TRUTH.items():
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
    return path


def test_a_portal_that_caught_up_passes(state_path: Path) -> None:
    lines: list[str] = []
    with FakeReadApi(results=CORRECT_PORTAL, token=TOKEN, page_size=2) as api:
        report = verify_run(
            portal_url=api.url, token=TOKEN, state_path=state_path, out=lines.append
        )

    assert report.ok, report.mismatches
    assert report.checked == 2
    assert report.invisible == [f"{ISSUER}/card-invisible/op-card-invisible"]
    assert len(api.requests) == 2, "follows the cursor's next link"
    assert "orders checked: 2" in lines
    assert "orders with every notification dropped (invisible to any receiver): 1" in lines


def test_mismatches_and_missing_orders_are_reported(state_path: Path) -> None:
    portal = copy.deepcopy(CORRECT_PORTAL)
    portal[0]["shipment"]["status"] = "IN_TRANSIT"  # never reconciled the dropped update
    del portal[1]
    lines: list[str] = []
    with FakeReadApi(results=portal, token=TOKEN) as api:
        report = verify_run(
            portal_url=api.url, token=TOKEN, state_path=state_path, out=lines.append
        )

    assert not report.ok
    assert report.mismatches == [
        f"{ISSUER}/card-on-hold/op-card-on-hold: missing in the portal",
        f"{ISSUER}/card-shipped/op-card-shipped: shipment.status: expected 'DELIVERED', "
        "portal has 'IN_TRANSIT'",
    ]
    assert sum(line.startswith("MISMATCH ") for line in lines) == 2


def test_an_unknown_code_must_not_move_the_portal_state(state_path: Path) -> None:
    portal = copy.deepcopy(CORRECT_PORTAL)
    portal[1]["production_status"] = "CARD_PROD_ON_HOLD"
    with FakeReadApi(results=portal, token=TOKEN) as api:
        report = verify_run(portal_url=api.url, token=TOKEN, state_path=state_path, out=print)

    assert report.mismatches == [
        f"{ISSUER}/card-on-hold/op-card-on-hold: production_status: expected 'CARD_PROD_READY', "
        "portal has 'CARD_PROD_ON_HOLD'"
    ]


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
