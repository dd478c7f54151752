"""The sandbox's D1 token endpoint: the JWT-bearer grant with an ES256 assertion (SPEC §5.1)."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from d1sandbox.keys import KeyPairFiles
from d1sandbox.testing import SandboxProcess
from tests.d1sandbox.assertions import JWT_BEARER, assertion_make


def _token_request(sandbox: SandboxProcess, assertion: str, **data: str) -> requests.Response:
    form = {"grant_type": JWT_BEARER, "assertion": assertion, **data}
    return requests.post(sandbox.token_url, data=form, timeout=5)


def test_good_assertion_gets_a_bearer_token(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    response = _token_request(sandbox, assertion_make(sandbox_keys))

    assert response.status_code == 200
    payload = response.json()
    assert set(payload) == {"access_token", "token_type", "expires_in", "scope"}
    assert payload["token_type"] == "Bearer"
    assert payload["expires_in"] == 900
    assert sandbox.stats()["token_requests"] == {"total": 1, "issued": 1}


def test_json_body_is_accepted_too(sandbox: SandboxProcess, sandbox_keys: KeyPairFiles) -> None:
    response = requests.post(
        sandbox.token_url,
        json={"grant_type": JWT_BEARER, "assertion": assertion_make(sandbox_keys)},
        timeout=5,
    )

    assert response.status_code == 200


def _other_p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("build", "error_code"),
    [
        pytest.param(
            lambda keys: assertion_make(keys, headers={"kid": "sbx-unknown"}),
            "CRYPTO_ERROR",
            id="unknown-kid",
        ),
        pytest.param(
            lambda keys: assertion_make(
                keys, key="a-shared-secret-that-is-long-enough-for-hs256", algorithm="HS256"
            ),
            "CRYPTO_ERROR",
            id="alg-hs256",
        ),
        pytest.param(
            lambda keys: assertion_make(
                keys, key=ec.generate_private_key(ec.SECP384R1()), algorithm="ES384"
            ),
            "CRYPTO_ERROR",
            id="alg-es384",
        ),
        pytest.param(
            lambda keys: jwt.encode(
                {"iss": "ISSUERX001", "sub": "ISSUERX001", "exp": int(time.time()) + 60},
                key=None,
                algorithm="none",
                headers={"kid": keys.key_id},
            ),
            "CRYPTO_ERROR",
            id="alg-none",
        ),
        pytest.param(
            lambda keys: assertion_make(keys, key=_other_p256_key()),
            "CRYPTO_ERROR",
            id="signed-by-another-key",
        ),
        pytest.param(
            lambda keys: assertion_make(keys, claims={"sub": "ISSUERX002"}),
            "FIELD_INVALID_VALUE",
            id="iss-differs-from-sub",
        ),
        pytest.param(
            lambda keys: assertion_make(keys, claims={"exp": int(time.time()) - 120}),
            "FIELD_INVALID_VALUE",
            id="expired",
        ),
        pytest.param(
            lambda keys: assertion_make(keys, claims={"exp": int(time.time()) + 20 * 60}),
            "FIELD_INVALID_VALUE",
            id="exp-more-than-15-minutes-ahead",
        ),
        pytest.param(
            lambda keys: assertion_make(keys, drop=("exp",)),
            "FIELD_INVALID_FORMAT",
            id="no-exp",
        ),
        pytest.param(lambda keys: "not-a-jwt", "PARSING_ERROR", id="garbage"),
    ],
)
def test_bad_assertions_are_refused_with_400(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles, build, error_code: str
) -> None:
    response = _token_request(sandbox, build(sandbox_keys))

    assert response.status_code == 400
    assert response.json()["errorCode"] == error_code
    assert set(response.json()) == {"errorCode", "error"}
    assert sandbox.stats()["token_requests"] == {"total": 1, "refused": 1}


def test_exp_just_under_15_minutes_is_accepted(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    assertion = assertion_make(sandbox_keys, claims={"exp": int(time.time()) + 14 * 60})

    assert _token_request(sandbox, assertion).status_code == 200


def test_wrong_grant_type_and_missing_assertion_are_refused(
    sandbox: SandboxProcess, sandbox_keys: KeyPairFiles
) -> None:
    wrong_grant = _token_request(
        sandbox, assertion_make(sandbox_keys), grant_type="client_credentials"
    )
    missing = requests.post(sandbox.token_url, data={"grant_type": JWT_BEARER}, timeout=5)

    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["errorCode"] == "FIELD_INVALID_VALUE"
    assert missing.status_code == 400
    assert missing.json()["errorCode"] == "FIELD_INVALID_FORMAT"
