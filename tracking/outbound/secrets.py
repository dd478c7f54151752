"""Endpoint signing secrets: made as Standard Webhooks `whsec_…`, stored encrypted, rotated.

The portal must sign with a secret, so it keeps the secret itself, encrypted with a key derived
from EVENT_SECRET_KEY (by default DJANGO_SECRET_KEY); the keys in DJANGO_SECRET_KEY_FALLBACKS
still decrypt, so rotating the Django key does not lose the endpoints' secrets.
"""

from __future__ import annotations

import base64
import hashlib
import secrets as token_source

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

SECRET_PREFIX = "whsec_"
_KEY_PURPOSE = b"tracking.outbound.endpoint-secret:"


def secret_new() -> str:
    """A fresh signing secret in the Standard Webhooks form (`whsec_` + base64 of 32 bytes)."""
    return SECRET_PREFIX + base64.b64encode(token_source.token_bytes(32)).decode()


def _fernet() -> MultiFernet:
    keys = [settings.EVENT_SECRET_KEY or settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet(
        [
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(_KEY_PURPOSE + k.encode()).digest()))
            for k in keys
            if k
        ]
    )


def secret_encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def secret_decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
