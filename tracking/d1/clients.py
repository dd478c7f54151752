"""D1 clients: the OAuth applications D1 gets bearer tokens with, each bound to one issuer.

The secret is generated here, returned once, and stored only as a hash (django-oauth-toolkit
hashes `client_secret` on save). Changes are audited by `tracking.signals`. Beat deletes their
expired and revoked tokens (`clear_expired_tokens_task`).
"""

from __future__ import annotations

from dataclasses import dataclass

from celery import shared_task
from django.db import transaction
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import clear_expired, get_application_model

from tracking.models import D1Client, Issuer


@dataclass(frozen=True)
class D1ClientCredentials:
    """What D1 is configured with; the secret is not kept anywhere in clear."""

    client: D1Client
    client_id: str
    client_secret: str


def d1_client_create(*, issuer: Issuer, name: str = "") -> D1ClientCredentials:
    """Create an OAuth application (client_credentials, confidential) bound to `issuer`.

    Writes one Application (secret hashed) and one D1Client; returns the clear secret once.
    """
    Application = get_application_model()
    secret = generate_client_secret()
    with transaction.atomic():
        application = Application.objects.create(
            name=(name or f"D1 notifications for {issuer.issuer_id}")[:255],
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret,
            hash_client_secret=True,
            skip_authorization=True,
        )
        client = D1Client.objects.create(application=application, issuer=issuer)
    return D1ClientCredentials(client=client, client_id=application.client_id, client_secret=secret)


def d1_client_deactivate(*, client: D1Client) -> int:
    """Switch a D1 client off and revoke its tokens; return how many tokens were revoked.

    Its tokens are refused from then on even before they expire.
    """
    with transaction.atomic():
        client.is_active = False
        # The save's signal (tracking.signals) revokes the tokens, whatever switched the
        # client off, and leaves the count on the instance.
        client.tokens_revoked = 0
        client.save(update_fields=["is_active"])
    return client.tokens_revoked


@shared_task(name="tracking.clear_expired_tokens")
def clear_expired_tokens_task() -> None:
    """Delete D1's expired and revoked OAuth tokens (django-oauth-toolkit's `cleartokens`)."""
    clear_expired()
