"""Read-API tokens: made with a secret shown once, kept as a SHA-256 digest, expiring.

A token is 32 random bytes (URL-safe text): a plain SHA-256 of it cannot be reversed or guessed,
so the look-up is one indexed query and no slow hash is needed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tracking.models import Issuer, ReadApiToken
from tracking.services.audit import Actor, audit_actor
from tracking.services.issuer_grants import ALL, issuers_granted

PREFIX_LENGTH = 8


@dataclass(frozen=True)
class IssuedToken:
    """The stored row and the token itself, which exists nowhere else."""

    token: ReadApiToken
    key: str


def api_token_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


class IssuersNotGranted(ValueError):
    """A token was to be narrowed to issuers its user may not see (or that do not exist)."""


def _new_key() -> str:
    """A random key that never starts with "-": pasted after `--token` on a command line, it
    would be read as an option."""
    key = secrets.token_urlsafe(32)
    while key.startswith("-"):
        key = secrets.token_urlsafe(32)
    return key


def api_token_create(
    *,
    user,
    name: str,
    actor: Actor,
    lifetime: timedelta | None = None,
    issuer_ids: Iterable[str] = (),
) -> IssuedToken:
    """Make a token for `user` valid for `lifetime` (READ_API_TOKEN_LIFETIME_DAYS by default),
    acting with the user's grant, narrowed to `issuer_ids` when given.

    Writes one ReadApiToken holding the digest (and its issuers) and its `api_token.create`
    audit entry for `actor`, in one transaction; returns the key, which is not kept. Raises
    IssuersNotGranted when an issuer id is not one the user is granted.
    """
    if lifetime is None:
        lifetime = timedelta(days=settings.READ_API_TOKEN_LIFETIME_DAYS)
    if lifetime <= timedelta(0):
        raise ValueError("a token must be valid for some time")
    wanted = sorted(set(issuer_ids))
    granted = issuers_granted(user)
    narrowed = list(
        Issuer.objects.filter(issuer_id__in=wanted)
        if granted is ALL
        else Issuer.objects.filter(issuer_id__in=[i for i in wanted if i in granted])
    )
    if len(narrowed) != len(wanted):
        missing = sorted(set(wanted) - {issuer.issuer_id for issuer in narrowed})
        raise IssuersNotGranted(
            f"{user.get_username()} is not granted issuer(s) {', '.join(missing)}."
        )
    key = _new_key()
    with transaction.atomic():
        token = ReadApiToken.objects.create(
            user=user,
            name=name[:100],
            prefix=key[:PREFIX_LENGTH],
            digest=api_token_digest(key),
            expires_at=timezone.now() + lifetime,
        )
        token.issuers.set(narrowed)
        audit_actor(
            actor,
            action="api_token.create",
            targets=[token],
            details={
                "for_user": user.get_username(),
                "expires_at": token.expires_at,
                "issuers": wanted or "all of the user's",
            },
        )
    return IssuedToken(token=token, key=key)


def api_token_delete(*, token: ReadApiToken, actor: Actor) -> None:
    """Delete `token` (it stops working at once) and write its `api_token.delete` entry."""
    with transaction.atomic():
        audit_actor(
            actor,
            action="api_token.delete",
            targets=[token],
            details={"for_user": token.user.get_username()},
        )
        token.delete()


def api_token_find(*, key: str) -> ReadApiToken | None:
    """The token whose digest matches `key` (expired or not), with its user; None if unknown."""
    return ReadApiToken.objects.select_related("user").filter(digest=api_token_digest(key)).first()
