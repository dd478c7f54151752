"""Builds JWT-bearer assertions (good and deliberately bad) for the sandbox's token endpoint."""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from d1sandbox.keys import KeyPairFiles

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def assertion_make(
    keys: KeyPairFiles,
    *,
    issuer_id: str = "ISSUERX001",
    claims: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    headers: dict[str, Any] | None = None,
    key: Any = None,
    algorithm: str = "ES256",
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": issuer_id, "sub": issuer_id, "iat": now, "exp": now + 300}
    payload.update(claims or {})
    for name in drop:
        payload.pop(name, None)
    signing_key = key
    if signing_key is None:
        signing_key = serialization.load_pem_private_key(
            keys.private_key_path.read_bytes(), password=None
        )
    return jwt.encode(
        payload,
        signing_key,
        algorithm=algorithm,
        headers={"kid": keys.key_id, **(headers or {})},
    )
