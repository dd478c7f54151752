"""A short per-process memory of valid D1 bearer tokens, so the webhook does not look each up.

Only valid answers are remembered, for D1_TOKEN_CHECK_CACHE_SECONDS (a few seconds, far under
the token lifetime): a token that is revoked, expires, or whose D1 client is deactivated is
refused at most that many seconds later. Refusals are never remembered, so a new token works
at once and a wrong one is looked up (and counted as a failure) every time.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings

from tracking.d1.access import TokenCheck, d1_token_check

MAX_ENTRIES = 256  # D1 holds a handful of live tokens; this only bounds a flood of new ones

_valid: dict[str, tuple[float, TokenCheck]] = {}


def d1_token_check_remembered(*, token: str) -> TokenCheck:
    """`d1_token_check`, answered from memory for a token found valid in the last seconds."""
    ttl = settings.D1_TOKEN_CHECK_CACHE_SECONDS
    if ttl <= 0:
        return d1_token_check(token=token)
    key = hashlib.sha256(token.encode("utf-8", errors="replace")).digest()
    now = time.monotonic()
    remembered = _valid.get(key)
    if remembered is not None and remembered[0] > now:
        return remembered[1]
    check = d1_token_check(token=token)
    if not check.is_valid:
        _valid.pop(key, None)
        return check
    if len(_valid) >= MAX_ENTRIES:
        for stale in [k for k, (until, _) in list(_valid.items()) if until <= now]:
            _valid.pop(stale, None)
        if len(_valid) >= MAX_ENTRIES:
            _valid.clear()
    _valid[key] = (now + ttl, check)
    return check


def forget_all() -> None:
    """Drop every remembered token (tests; a revocation that must apply at once)."""
    _valid.clear()
