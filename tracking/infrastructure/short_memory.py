"""What one process remembers for a few seconds instead of asking the database or the cache again.

Each `ShortMemory` holds values with their own expiry, bounded in size (past the bound it starts
afresh: it only saves lookups, it never decides). The webhook's hot path uses three: valid D1
tokens, active issuers, and addresses without authentication failures.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

_ALL: list[ShortMemory] = []


class ShortMemory:
    """Values this process remembers, each for the seconds it was remembered with."""

    def __init__(self, *, max_entries: int) -> None:
        self.max_entries = max_entries
        self._values: dict[Hashable, tuple[float, Any]] = {}
        _ALL.append(self)

    def get(self, key: Hashable) -> Any | None:
        """The value remembered for `key` if it has not expired, else None."""
        remembered = self._values.get(key)
        if remembered is None or remembered[0] <= time.monotonic():
            return None
        return remembered[1]

    def remember(self, key: Hashable, value: Any, *, seconds: float) -> None:
        if seconds <= 0:
            return
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = (time.monotonic() + seconds, value)

    def forget(self, key: Hashable) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()


def short_memories_clear() -> None:
    """Forget everything every memory of this process holds (tests)."""
    for memory in _ALL:
        memory.clear()
