"""Fixed-window rate limits kept in Django's cache, shared by every web process that shares it.

A window is the current multiple of `window` seconds; its counter lives in one cache key that
expires with it, so there is nothing to clean up. Approximate by design (a burst can straddle
two windows), which is enough to slow down guessing and floods. A cache outage counts nothing:
it must not take the webhook down with it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache

from tracking.infrastructure.short_memory import ShortMemory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowCount:
    """How many hits the current window holds, and the seconds until it ends."""

    hits: int
    retry_after: int


def _window(scope: str, subject: str, window: int) -> tuple[str, int]:
    now = time.time()
    index = int(now // window)
    retry_after = max(1, int((index + 1) * window - now) + 1)
    return f"rate:{scope}:{subject}:{index}", retry_after


# (scope, subject) this process found hit-free a moment ago, not asked again meanwhile.
_clean = ShortMemory(max_entries=1024)


def rate_limit_count(*, scope: str, subject: str, window: int) -> WindowCount:
    """Count one hit for `subject` in the current window; return the window's total."""
    _clean.forget((scope, subject))
    key, retry_after = _window(scope, subject, window)
    try:
        if cache.add(key, 1, timeout=window + 1):
            return WindowCount(1, retry_after)
        return WindowCount(int(cache.incr(key)), retry_after)
    except ValueError:  # the key expired between add and incr
        cache.set(key, 1, timeout=window + 1)
        return WindowCount(1, retry_after)
    except Exception:
        logger.warning("rate limit cache unavailable scope=%s", scope, exc_info=True)
        return WindowCount(0, retry_after)


def rate_limit_peek(
    *, scope: str, subject: str, window: int, clean_for: float = 0.0
) -> WindowCount:
    """The current window's total for `subject`, without counting a hit.

    With `clean_for`, a subject found without hits is taken as still without them for that many
    seconds, without asking the cache: a hit counted in this process forgets it at once, one
    counted by another process is seen at most `clean_for` seconds later.
    """
    key, retry_after = _window(scope, subject, window)
    if _clean.get((scope, subject)):
        return WindowCount(0, retry_after)
    try:
        hits = int(cache.get(key, 0))
    except Exception:
        logger.warning("rate limit cache unavailable scope=%s", scope, exc_info=True)
        return WindowCount(0, retry_after)
    if hits == 0:
        _clean.remember((scope, subject), True, seconds=clean_for)
    return WindowCount(hits, retry_after)
