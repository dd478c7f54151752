"""Read-API tokens: made with a secret shown once, kept as a SHA-256 digest, expiring.

A token is 32 random bytes (URL-safe text): a plain SHA-256 of it cannot be reversed or guessed,
so the look-up is one indexed query and no slow hash is needed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tracking.models import ReadApiToken
from tracking.services.audit import Actor, audit_actor

PREFIX_LENGTH = 8


@dataclass(frozen=True)
class IssuedToken:
    """The stored row and the token itself, which exists nowhere else."""

    token: ReadApiToken
    key: str


def api_token_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def api_token_create(
    *, user, name: str, actor: Actor, lifetime: timedelta | None = None
) -> IssuedToken:
    """Make a token for `user` valid for `lifetime` (READ_API_TOKEN_LIFETIME_DAYS by default).

    Writes one ReadApiToken holding the digest and its `api_token.create` audit entry for
    `actor`, in one transaction; returns the key, which is not kept.
    """
    if lifetime is None:
        lifetime = timedelta(days=settings.READ_API_TOKEN_LIFETIME_DAYS)
    if lifetime <= timedelta(0):
        raise ValueError("a token must be valid for some time")
    key = secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ReadApiToken.objects.create(
            user=user,
            name=name[:100],
            prefix=key[:PREFIX_LENGTH],
            digest=api_token_digest(key),
            expires_at=timezone.now() + lifetime,
        )
        audit_actor(
            actor,
            action="api_token.create",
            targets=[token],
            details={"for_user": user.get_username(), "expires_at": token.expires_at},
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
