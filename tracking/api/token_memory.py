"""A short per-process memory of valid D1 bearer tokens, so the webhook does not look each up.

Only valid answers are remembered, for D1_TOKEN_CHECK_CACHE_SECONDS (a few seconds, far under
the token lifetime): a token that is revoked, expires, or whose D1 client is deactivated is
refused at most that many seconds later. Refusals are never remembered, so a new token works
at once and a wrong one is looked up (and counted as a failure) every time.
"""

from __future__ import annotations

import hashlib

from django.conf import settings

from tracking.d1.access import TokenCheck, d1_token_check
from tracking.infrastructure.short_memory import ShortMemory

# D1 holds a handful of live tokens; the bound only stops a flood of new ones growing it.
_valid = ShortMemory(max_entries=256)


def d1_token_check_remembered(*, token: str) -> TokenCheck:
    """`d1_token_check`, answered from memory for a token found valid in the last seconds."""
    key = hashlib.sha256(token.encode("utf-8", errors="replace")).digest()
    remembered = _valid.get(key)
    if remembered is not None:
        return remembered
    check = d1_token_check(token=token)
    if check.is_valid:
        _valid.remember(key, check, seconds=settings.D1_TOKEN_CHECK_CACHE_SECONDS)
    else:
        _valid.forget(key)
    return check
