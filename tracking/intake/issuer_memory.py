"""A short per-process memory of the active issuers D1 posts to, so each POST need not look one up.

Only active issuers are remembered, for D1_ISSUER_CACHE_SECONDS (a few seconds): an issuer
switched off or edited in this process is forgotten at once (its save says so), and one
switched off by another process is refused at most that many seconds later. An unknown or
inactive issuer is never remembered, so one registered a moment ago is served at once.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tracking.domain.validation import ID_PATTERN, ISSUER_ID_LENGTH
from tracking.infrastructure.short_memory import ShortMemory
from tracking.models import Issuer

# Issuers are few; the bound only stops a flood of odd paths growing it.
_active = ShortMemory(max_entries=1024)


def active_issuer(issuer_id: str) -> Issuer | None:
    """The active issuer of this D1 issuerId, from memory when it was seen in the last seconds."""
    if len(issuer_id) != ISSUER_ID_LENGTH or not ID_PATTERN.fullmatch(issuer_id):
        return None
    issuer = _active.get(issuer_id)
    if issuer is not None:
        return issuer
    issuer = Issuer.objects.filter(issuer_id=issuer_id, is_active=True).first()
    if issuer is not None:
        _active.remember(issuer_id, issuer, seconds=settings.D1_ISSUER_CACHE_SECONDS)
    return issuer


@receiver(post_save, sender=Issuer, dispatch_uid="issuer-memory-forget-saved")
@receiver(post_delete, sender=Issuer, dispatch_uid="issuer-memory-forget-deleted")
def _forget_changed(sender, instance: Issuer, **kwargs) -> None:
    # Every remembered issuer is dropped, not only this one: an issuerId may have changed.
    _active.clear()
