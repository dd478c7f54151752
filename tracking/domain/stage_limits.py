"""How long an order may stay in each stage before it counts as stuck (the settings' limits)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings

from tracking.domain.statuses import NON_TERMINAL_STATUSES, TERMINAL_STATUSES


def stage_threshold(status: str) -> dt.timedelta:
    """How long an order may stay in `status` before it counts as stuck.

    RECONCILE_STAGE_THRESHOLDS gives a stage its own limit; any other stage (an unknown hold
    code included) waits RECONCILE_DEFAULT_STAGE_THRESHOLD. Every page, alert and the sweep
    read the limit here.
    """
    seconds = settings.RECONCILE_STAGE_THRESHOLDS.get(status)
    if seconds is None:
        return settings.RECONCILE_DEFAULT_STAGE_THRESHOLD
    return dt.timedelta(seconds=seconds)


def stage_thresholds() -> dict[str, dt.timedelta]:
    """The threshold of every stage an order can wait in (the path's and any configured)."""
    statuses = dict.fromkeys([*NON_TERMINAL_STATUSES, *settings.RECONCILE_STAGE_THRESHOLDS])
    return {s: stage_threshold(s) for s in statuses if s not in TERMINAL_STATUSES}
