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
from django.utils import timezone

from tracking.models import ReadApiToken

PREFIX_LENGTH = 8


@dataclass(frozen=True)
class IssuedToken:
    """The stored row and the token itself, which exists nowhere else."""

    token: ReadApiToken
    key: str


def api_token_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def api_token_create(*, user, name: str, lifetime: timedelta | None = None) -> IssuedToken:
    """Make a token for `user` valid for `lifetime` (READ_API_TOKEN_LIFETIME_DAYS by default).

    Writes one ReadApiToken holding the digest; returns the key, which is not kept.
    """
    if lifetime is None:
        lifetime = timedelta(days=settings.READ_API_TOKEN_LIFETIME_DAYS)
    if lifetime <= timedelta(0):
        raise ValueError("a token must be valid for some time")
    key = secrets.token_urlsafe(32)
    token = ReadApiToken.objects.create(
        user=user,
        name=name[:100],
        prefix=key[:PREFIX_LENGTH],
        digest=api_token_digest(key),
        expires_at=timezone.now() + lifetime,
    )
    return IssuedToken(token=token, key=key)


def api_token_find(*, key: str) -> ReadApiToken | None:
    """The token whose digest matches `key` (expired or not), with its user; None if unknown."""
    return ReadApiToken.objects.select_related("user").filter(digest=api_token_digest(key)).first()
