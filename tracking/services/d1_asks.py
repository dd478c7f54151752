"""Asking D1 on demand, bounded: rate limits per user and per issuer.

`d1_ask_allow` counts a staff member's ask (look-up, "Ask D1 now") against their own window
(D1_ASK_RATE_PER_USER) and each issuer's (D1_ASK_RATE_PER_ISSUER), and raises D1AskRefused,
saying when to retry, once either is spent. Commands run by operators on the server are not
counted: they are not a browser that can be clicked 40 times a second. Asking about many orders
at once is one paced job instead (`tracking.services.d1_ask_jobs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings
from django.utils.translation import gettext as _

from tracking.infrastructure.rate_limits import rate_limit_count
from tracking.services.audit import Actor

logger = logging.getLogger(__name__)

USER_SCOPE = "d1-ask-user"
ISSUER_SCOPE = "d1-ask-issuer"
AUDIT_ORDERS_MAX = 100


class D1AskRefused(Exception):
    """Too many asks of D1 in the current window; `retry_after` seconds until the next one."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def d1_ask_allow(*, actor: Actor, issuer_ids: Iterable[str], asks: int = 1) -> None:
    """Count `asks` for the actor's user and for each issuer; raise D1AskRefused when over.

    Writes only cache counters. A command (no user) is not counted.
    """
    if actor.user_id is None:
        return
    window = settings.D1_ASK_RATE_WINDOW_SECONDS
    checks = [(USER_SCOPE, f"user:{actor.user_id}", settings.D1_ASK_RATE_PER_USER, None)]
    checks += [
        (ISSUER_SCOPE, issuer_id, settings.D1_ASK_RATE_PER_ISSUER, issuer_id)
        for issuer_id in sorted(set(issuer_ids))
    ]
    for scope, subject, limit, issuer_id in checks:
        count = None
        for _ask in range(max(1, asks)):
            count = rate_limit_count(scope=scope, subject=subject, window=window)
        if count is not None and count.hits > limit:
            logger.warning(
                "d1 ask refused scope=%s subject=%s hits=%s limit=%s",
                scope,
                subject,
                count.hits,
                limit,
            )
            if issuer_id is None:
                text = _(
                    "You have asked D1 %(limit)s times in %(window)s seconds, the most allowed; "
                    "try again in %(retry)s seconds."
                )
            else:
                text = _(
                    "Issuer %(issuer)s has been asked about %(limit)s times in %(window)s "
                    "seconds, the most allowed (D1 limits its API); try again in %(retry)s "
                    "seconds."
                )
            raise D1AskRefused(
                text
                % {
                    "limit": limit,
                    "window": window,
                    "retry": count.retry_after,
                    "issuer": issuer_id,
                },
                retry_after=count.retry_after,
            )
