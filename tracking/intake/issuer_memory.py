"""A short per-process memory of the active issuers D1 posts to, so each POST need not look one up.

Only active issuers are remembered, for D1_ISSUER_CACHE_SECONDS (a few seconds): an issuer
switched off or edited in this process is forgotten at once (its save says so), and one
switched off by another process is refused at most that many seconds later. An unknown or
inactive issuer is never remembered, so one registered a moment ago is served at once.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tracking.domain.validation import ID_PATTERN, ISSUER_ID_LENGTH
from tracking.models import Issuer

MAX_ENTRIES = 1024  # issuers are few; this only bounds memory against a flood of odd paths

_active: dict[str, tuple[float, Issuer]] = {}


def active_issuer(issuer_id: str) -> Issuer | None:
    """The active issuer of this D1 issuerId, from memory when it was seen in the last seconds."""
    if len(issuer_id) != ISSUER_ID_LENGTH or not ID_PATTERN.fullmatch(issuer_id):
        return None
    ttl = settings.D1_ISSUER_CACHE_SECONDS
    now = time.monotonic()
    remembered = _active.get(issuer_id)
    if ttl > 0 and remembered is not None and remembered[0] > now:
        return remembered[1]
    issuer = Issuer.objects.filter(issuer_id=issuer_id, is_active=True).first()
    if issuer is None or ttl <= 0:
        _active.pop(issuer_id, None)
        return issuer
    if len(_active) >= MAX_ENTRIES:
        _active.clear()
    _active[issuer_id] = (now + ttl, issuer)
    return issuer


def forget_all() -> None:
    """Drop every remembered issuer (tests; an edit that must apply at once)."""
    _active.clear()


@receiver(post_save, sender=Issuer, dispatch_uid="issuer-memory-forget-saved")
@receiver(post_delete, sender=Issuer, dispatch_uid="issuer-memory-forget-deleted")
def _forget_changed(sender, instance: Issuer, **kwargs) -> None:
    # Every remembered issuer is dropped, not only this one: an issuerId may have changed.
    _active.clear()
