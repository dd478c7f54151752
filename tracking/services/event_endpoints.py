"""Endpoint services: add one, rotate its secret, replay events to it; each audited.

Admin actions and `manage.py create_event_endpoint` are thin callers of these functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tracking.models import Issuer
from tracking.models.outbound import EVENT_TYPES, EventDelivery, EventEndpoint, OutboundEvent
from tracking.outbound.addresses import addresses_resolve
from tracking.outbound.outbox import deliveries_owe
from tracking.outbound.secrets import secret_encrypt, secret_new
from tracking.services.audit import Actor, audit_actor


class UnknownEventType(ValueError):
    pass


def event_types_check(types: Sequence[str]) -> list[str]:
    """`types` as stored (sorted, unique), or UnknownEventType naming the first unknown one."""
    for name in types:
        if name not in EVENT_TYPES:
            raise UnknownEventType(name)
    return sorted(set(types))


@transaction.atomic
def endpoint_create(
    *,
    issuer: Issuer,
    url: str,
    event_types: Sequence[str] = (),
    description: str = "",
    actor: Actor,
) -> tuple[EventEndpoint, str]:
    """Add an endpoint for `issuer` and return it with its secret (shown once, never again).

    Raises AddressRefused for an address events may not go to, UnknownEventType for a type
    that does not exist. Writes one `event_endpoint.create` audit entry.
    """
    addresses_resolve(url)
    secret = secret_new()
    endpoint = EventEndpoint.objects.create(
        issuer=issuer,
        url=url,
        event_types=event_types_check(event_types),
        description=description,
        secret_encrypted=secret_encrypt(secret),
    )
    audit_actor(
        actor,
        action="event_endpoint.create",
        targets=[endpoint],
        details={"url": url, "event_types": endpoint.event_types},
    )
    return endpoint, secret


@transaction.atomic
def endpoint_secret_rotate(
    *, endpoint: EventEndpoint, actor: Actor, now: dt.datetime | None = None
) -> str:
    """Give `endpoint` a new secret and return it (shown once); the old one keeps signing
    beside it for EVENT_SECRET_ROTATION_OVERLAP. Writes an `event_endpoint.rotate` entry."""
    now = now or timezone.now()
    secret = secret_new()
    endpoint = EventEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + settings.EVENT_SECRET_ROTATION_OVERLAP
    endpoint.secret_encrypted = secret_encrypt(secret)
    endpoint.save(
        update_fields=[
            "previous_secret_encrypted",
            "previous_secret_expires_at",
            "secret_encrypted",
        ]
    )
    audit_actor(
        actor,
        action="event_endpoint.rotate",
        targets=[endpoint],
        details={"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()},
    )
    return secret


@transaction.atomic
def events_replay(
    *,
    endpoint: EventEndpoint,
    actor: Actor,
    event: OutboundEvent | None = None,
    since: dt.datetime | None = None,
) -> list[EventDelivery]:
    """Owe `endpoint` one event again, or every event of its issuer since `since` (its types).

    The replayed events keep their `webhook-id`, so a receiver that has them already can tell.
    Writes one `event_endpoint.replay` audit entry; raises ValueError when neither or both of
    `event` and `since` are given, or the event is another issuer's.
    """
    if (event is None) == (since is None):
        raise ValueError("replay one event or every event since a time")
    if event is not None:
        if event.issuer_id != endpoint.issuer_id:
            raise ValueError("the event is another issuer's")
        events = [event]
    else:
        events = list(
            OutboundEvent.objects.filter(issuer_id=endpoint.issuer_id, created_at__gte=since)
            .order_by("id")
            .only("id", "issuer_id", "type")
        )
        events = [e for e in events if endpoint.wants(e.type)]
    owed = deliveries_owe(events, endpoints=[endpoint], is_replay=True)
    audit_actor(
        actor,
        action="event_endpoint.replay",
        targets=[endpoint],
        details={
            "event": event.event_id if event is not None else None,
            "since": since.isoformat() if since is not None else None,
            "events": len(owed),
        },
    )
    return owed
