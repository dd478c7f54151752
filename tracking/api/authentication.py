"""How integrations sign in to the read API: `Authorization: Token <key>`, checked by digest."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from tracking.models import ReadApiToken
from tracking.services.api_tokens import api_token_find

KEYWORD = "Token"
MAX_KEY_LENGTH = 128


class ReadApiTokenAuthentication(BaseAuthentication):
    """A read-API token (tracking.ReadApiToken): unknown, expired or of an inactive user: 401."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        if len(key) > MAX_KEY_LENGTH:
            raise exceptions.AuthenticationFailed("Invalid token.")
        token = api_token_find(key=key)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.is_expired:
            raise exceptions.AuthenticationFailed("Token expired.")
        return (token.user, token)

    def authenticate_header(self, request) -> str:
        return KEYWORD


def is_read_api_token(auth) -> bool:
    return isinstance(auth, ReadApiToken)
