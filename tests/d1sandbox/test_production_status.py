"""The sandbox's productionStatus API: bearer checks, the truth's latest item, injected faults."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from d1sandbox.keys import KeyPairFiles
from d1sandbox.state import ItemKey, StateStore
from d1sandbox.testing import SandboxProcess
from tests.d1sandbox.assertions import JWT_BEARER, assertion_make

ISSUER = "ISSUERX001"
CARD = "card-000123"
OPERATION = "op-7f3c9a12e4b54d01"
REQUESTED = {
    "operationId": OPERATION,
    "operation": "PRODUCE",
    "status": "PENDING",
    "startTime": "2026-03-02T09:15:04.120Z",
    "cardId": CARD,
    "details": {"status": "CARD_PROD_REQUESTED"},
}
PREPARED = {**REQUESTED, "details": {"status": "DATA_PREPARED", "dueDate": "2026-03-05"}}
# A card ordered twice: the first order shipped, the second is under way.
REORDERED = "card-000200"
FIRST_SHIPPED = {
    **REQUESTED,
    "operationId": "op-first",
    "cardId": REORDERED,
    "status": "SUCCESSFUL",
    "endTime": "2026-03-04T16:40:51.007Z",
    "details": {"status": "CARD_SHIPPED"},
}
SECOND_REQUESTED = {
    **REQUESTED,
    "operationId": "op-second",
    "cardId": REORDERED,
    "startTime": "2026-03-20T10:00:00.000Z",
}
CHANGE_RESULT = {
    "operationId": "upd-second",
    "operation": "UPDATE_ORDER",
    "status": "FAILED",
    "startTime": "2026-03-20T11:00:00.000Z",
    "endTime": "2026-03-20T11:00:01.000Z",
    "cardId": REORDERED,
    "details": {"type": "REDIRECT", "reason": "Change refused at this production stage"},
}
# A failure D1 sent without details, after CARD_PROD_ONGOING.
BARE = "card-000300"
BARE_ONGOING = {**REQUESTED, "operationId": "op-bare", "cardId": BARE}
BARE_ONGOING["details"] = {"status": "CARD_PROD_ONGOING", "productionSite": "PERSO-SITE-EU-01"}
BARE_FAILED = {
    key: value for key, value in BARE_ONGOING.items() if key not in {"details", "status"}
}
BARE_FAILED.update(
    status="FAILED",
    endTime="2026-03-02T10:00:00.000Z",
    errorCode="PERSO_MACHINE_FAULT",
    error="Personalization machine fault",
)


@pytest.fixture(scope="module", autouse=True)
def _truth(sandbox_state_path: Path) -> None:
    store = StateStore(sandbox_state_path)
    run_id, _ = store.run_start(seed=0, run_number=None, options={})
    store.items_record(
        run_id=run_id,
        happenings=[
            (ItemKey(ISSUER, CARD, OPERATION, 0), REQUESTED, False),
            (ItemKey(ISSUER, CARD, OPERATION, 1), PREPARED, True),
            (ItemKey(ISSUER, REORDERED, "op-first", 0), FIRST_SHIPPED, False),
            (ItemKey(ISSUER, REORDERED, "op-second", 0), SECOND_REQUESTED, False),
            (ItemKey(ISSUER, REORDERED, "upd-second", 0), CHANGE_RESULT, False),
            (ItemKey(ISSUER, BARE, "op-bare", 0), BARE_ONGOING, False),
            (ItemKey(ISSUER, BARE, "op-bare", 1), BARE_FAILED, False),
        ],
    )
    store.close()


def _token(sandbox: SandboxProcess, keys: KeyPairFiles, issuer_id: str = ISSUER) -> str:
    response = requests.post(
        sandbox.token_url,
        data={"grant_type": JWT_BEARER, "assertion": assertion_make(keys, issuer_id=issuer_id)},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _status(
    sandbox: SandboxProcess,
    token: str | None,
    *,
    issuer_id: str = ISSUER,
    card_id: str = CARD,
    correlation_id: str = "test-correlation-1",
) -> requests.Response:
    headers = {"Accept": "application/json", "x-correlation-id": correlation_id}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{sandbox.api_base_url}/issuers/{issuer_id}/physicalCards/{card_id}/productionStatus"
    return requests.get(url, headers=headers, timeout=5)


def test_answers_the_latest_item_exactly_as_generated(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    response = _status(sandbox, _token(sandbox, sandbox_keys), correlation_id="corr-latest-42")

    assert response.status_code == 200
    # The latest step counts even though the feed dropped it: D1 knows what happened.
    assert response.json() == {"operations": [PREPARED]}
    assert sandbox.stats()["status_requests"] == {"total": 1, "ok": 1}
    time.sleep(0.1)
    assert "correlation=corr-latest-42" in sandbox.log_text()


def test_answers_per_card_with_its_newest_order(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    response = _status(sandbox, _token(sandbox, sandbox_keys), card_id=REORDERED)

    # Not the shipped first order, and not the pull & change result (another operation).
    assert response.status_code == 200
    assert response.json() == {"operations": [SECOND_REQUESTED]}


def test_a_result_sent_without_details_is_answered_with_the_step_it_ended_at(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    response = _status(sandbox, _token(sandbox, sandbox_keys), card_id=BARE)

    assert response.status_code == 200
    assert response.json() == {"operations": [{**BARE_FAILED, "details": BARE_ONGOING["details"]}]}


def test_each_issuer_gets_the_answer_shape_set_for_it(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    token = _token(sandbox, sandbox_keys)
    default = _status(sandbox, token).json()

    assert sandbox.answer_shapes(ISSUERX001="bare") == {ISSUER: "bare"}
    bare = _status(sandbox, token).json()
    sandbox.answer_shapes(ISSUERX001="list")
    listed = _status(sandbox, token).json()
    refused = requests.post(
        f"{sandbox.url}/_sandbox/answer-shapes", json={ISSUER: "wrapped"}, timeout=5
    )
    sandbox.reset()  # forgets the tokens too
    after_reset = _status(sandbox, _token(sandbox, sandbox_keys)).json()

    # D1 says only that the answer "uses the same operations object": all three shapes exist.
    assert default == {"operations": [PREPARED]}
    assert bare == PREPARED
    assert listed == [PREPARED]
    assert refused.status_code == 400 and refused.json()["errorCode"] == "FIELD_INVALID_VALUE"
    assert after_reset == {"operations": [PREPARED]}


def test_answer_shapes_given_at_startup_are_kept_per_issuer(
    sandbox_keys: KeyPairFiles, sandbox_state_path: Path, tmp_path: Path
) -> None:
    with SandboxProcess(
        keys_dir=sandbox_keys.directory,
        state_path=sandbox_state_path,
        log_path=tmp_path / "serve.log",
        extra_args=["--bare-answer-issuer", ISSUER, "--list-answer-issuer", "ISSUERX002"],
    ) as server:
        shapes = server.control("GET", "answer-shapes")
        bare = _status(server, _token(server, sandbox_keys)).json()
        server.reset()
        still_bare = _status(server, _token(server, sandbox_keys)).json()

    assert shapes == {ISSUER: "bare", "ISSUERX002": "list"}
    assert bare == still_bare == PREPARED


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_missing_or_unknown_token_is_401(sandbox: SandboxProcess, token: str | None) -> None:
    response = _status(sandbox, token)

    assert response.status_code == 401
    assert response.json()["errorCode"] == "AUTHORIZER_UNAUTHORIZED"


def test_revoked_token_is_401(sandbox: SandboxProcess, sandbox_keys: KeyPairFiles) -> None:
    token = _token(sandbox, sandbox_keys)
    assert _status(sandbox, token).status_code == 200

    assert sandbox.revoke_tokens() == 1

    assert _status(sandbox, token).status_code == 401


def test_expired_token_is_401(
    sandbox_keys: KeyPairFiles, sandbox_state_path: Path, tmp_path: Path
) -> None:
    with SandboxProcess(
        keys_dir=sandbox_keys.directory,
        state_path=sandbox_state_path,
        log_path=tmp_path / "serve.log",
        extra_args=["--token-ttl", "1"],
    ) as short_lived:
        token = _token(short_lived, sandbox_keys)
        assert _status(short_lived, token).status_code == 200
        time.sleep(1.1)
        response = _status(short_lived, token)

    assert response.status_code == 401
    assert response.json()["errorCode"] == "AUTHORIZER_UNAUTHORIZED"


def test_token_of_another_issuer_is_403(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    other_token = _token(sandbox, sandbox_keys, issuer_id="ISSUERX002")

    response = _status(sandbox, other_token)

    assert response.status_code == 403
    assert sandbox.stats()["status_requests"] == {"total": 1, "forbidden": 1}


def test_unknown_card_is_404_card_not_found(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    response = _status(sandbox, _token(sandbox, sandbox_keys), card_id="card-unknown")

    assert response.status_code == 404
    assert response.json()["errorCode"] == "CARD_NOT_FOUND"


def test_injected_429_carries_retry_after(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    token = _token(sandbox, sandbox_keys)
    sandbox.faults(script=[429], retry_after=3)

    limited = _status(sandbox, token)
    after = _status(sandbox, token)

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert after.status_code == 200
    assert sandbox.stats()["status_requests"] == {"total": 2, "injected_429": 1, "ok": 1}


def test_fault_rates_apply_to_every_call_until_changed(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    token = _token(sandbox, sandbox_keys)
    sandbox.faults(rate_5xx=1.0, status_5xx=502)

    answers = [_status(sandbox, token).status_code for _ in range(3)]
    sandbox.faults(rate_5xx=0.0)

    assert answers == [502, 502, 502]
    assert _status(sandbox, token).status_code == 200


def test_latency_is_added_before_answering(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    token = _token(sandbox, sandbox_keys)
    sandbox.faults(latency_ms=300)

    started = time.monotonic()
    response = _status(sandbox, token)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_startup_flags_inject_faults(
    sandbox_keys: KeyPairFiles, sandbox_state_path: Path, tmp_path: Path
) -> None:
    with SandboxProcess(
        keys_dir=sandbox_keys.directory,
        state_path=sandbox_state_path,
        log_path=tmp_path / "serve.log",
        extra_args=["--rate-429", "1", "--retry-after", "7"],
    ) as limited:
        response = _status(limited, _token(limited, sandbox_keys))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
