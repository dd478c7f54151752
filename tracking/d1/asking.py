"""Asking D1 about one card: one productionStatus call, timed, its failure classified here.

`production_status_ask` is the only place the portal asks D1 on demand (reconcile, look-up,
the sweep and "Ask D1 now" jobs all come through it). It never raises for D1's sake: a 404
becomes an answer with outcome `not_found`, any other failure one with outcome `error`, so
what to do with the answer is decided by the caller from one typed value.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from tracking.d1.client import D1CardNotFoundError, D1Error, d1_api_client_for
from tracking.models import Issuer, ReconcileOutcome

ERROR_TEXT_CHARS = 2000


@dataclass(frozen=True)
class D1Answer:
    """What one productionStatus call brought back, or why it brought nothing.

    `operations` is None when D1 gave no answer (`not_found` or `error`); `outcome` is that
    classification, `unchanged` when D1 answered (the caller decides whether it changed
    anything).
    """

    card_id: str
    correlation_id: str
    started_at: datetime
    latency_ms: int
    outcome: str
    operations: list[dict[str, Any]] | None = None
    http_status: int | None = None
    error: str = ""

    @property
    def answered(self) -> bool:
        return self.operations is not None

    @property
    def items(self) -> list[dict[str, Any]]:
        """The operation items D1 answered; empty when it did not answer."""
        return self.operations or []


def production_status_ask(
    *, issuer: Issuer, card_id: str, correlation_id: str | None = None
) -> D1Answer:
    """Ask D1 for `card_id`'s productionStatus now; never inside a transaction (D1 is slow).

    `correlation_id` is the id of the request or task that caused the call, so one id follows
    it to D1; a fresh one without. Reads only: no row is written here. D1's failures are the
    answer's outcome, not exceptions.
    """
    correlation_id = correlation_id or uuid.uuid4().hex
    started_at = timezone.now()
    started = time.monotonic()
    operations = None
    http_status: int | None = None
    error = ""
    try:
        operations = d1_api_client_for(issuer).get_production_status(
            card_id, correlation_id=correlation_id
        )
        http_status, outcome = 200, ReconcileOutcome.UNCHANGED
    except D1CardNotFoundError as exc:
        http_status, error, outcome = exc.status, d1_error_text(exc), ReconcileOutcome.NOT_FOUND
    except D1Error as exc:
        http_status, error, outcome = exc.status, d1_error_text(exc), ReconcileOutcome.ERROR
    return D1Answer(
        card_id=card_id,
        correlation_id=correlation_id,
        started_at=started_at,
        latency_ms=round((time.monotonic() - started) * 1000),
        outcome=outcome,
        operations=operations,
        http_status=http_status,
        error=error,
    )


def d1_error_text(exc: D1Error) -> str:
    """The failure as staff read it on the attempt: message, status, code and masked body."""
    text = str(exc)
    if exc.body:
        text = f"{text}: {exc.body}"
    return text[:ERROR_TEXT_CHARS]
