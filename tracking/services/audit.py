"""The audit trail: who did what, to what, when and from where; append-only.

`audit_record` is the one way in. The services that act on orders (reconcile now, replay,
acknowledge, register, export, look up) and on read-API tokens write their own entries, inside
their own transaction, for the `Actor` they are given: a staff user with the request's address,
or a command by its name. So an action is audited whether the admin, the API or `manage.py`
asked for it. Changes to issuers, D1 clients, users, groups and permissions are recorded by
`tracking.signals` whatever screen or command made them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.http import HttpRequest

from tracking.d1.access import client_address
from tracking.domain.masking import pan_mask_value
from tracking.models import AuditEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acts, for the audit trail: a signed-in user (and the request they sent) or a command."""

    user: Any = None
    request: HttpRequest | None = None
    command: str = ""  # e.g. "manage.py reconcile", written as the entry's username

    @classmethod
    def of_request(cls, request: HttpRequest) -> Actor:
        return cls(user=getattr(request, "user", None), request=request)

    @classmethod
    def of_command(cls, name: str) -> Actor:
        return cls(command=name)

    @property
    def user_id(self) -> int | None:
        return getattr(self.user, "pk", None) if self.user is not None else None


def _ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    address = client_address(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _who(user: Any, request: HttpRequest | None) -> Any:
    if (user is None or not getattr(user, "is_authenticated", False)) and request is not None:
        user = getattr(request, "user", None)
    if user is not None and not getattr(user, "is_authenticated", False):
        return None
    return user


def _entry(*, user, action, target, request, details, command: str = "") -> AuditEntry:
    return AuditEntry(
        user=user,
        username=user.get_username() if user is not None else command[:150],
        action=action[:64],
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk)[:64] if target is not None and target.pk is not None else "",
        target_repr=str(target)[:255] if target is not None else "",
        details=pan_mask_value(details or {}),
        ip_address=_ip(request),
        user_agent=(request.headers.get("user-agent", "") if request is not None else "")[:255],
    )


def audit_record(
    *,
    user: Any,
    action: str,
    target: models.Model | None,
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry and return it.

    `user` may be None (a command, the system) or anonymous; then the request's user is used
    when there is one. `details` must be JSON-serialisable; card-number-like digits in it are
    masked. Writes one AuditEntry; raises only database errors, so a caller's transaction that
    fails to audit fails as a whole.
    """
    entry = _entry(
        user=_who(user, request), action=action, target=target, request=request, details=details
    )
    entry.save()
    logger.info(
        "audit action=%s user=%s target=%s:%s",
        entry.action,
        entry.username or "-",
        entry.target_type,
        entry.target_id,
    )
    return entry


def audit_actor(
    actor: Actor,
    *,
    action: str,
    targets: Iterable[models.Model | None],
    details: dict[str, Any] | None = None,
) -> int:
    """Append one entry per target (None: an action on no one object) for `actor`."""
    who = _who(actor.user, actor.request)
    entries = [
        _entry(
            user=who,
            action=action,
            target=target,
            request=actor.request,
            details=details,
            command=actor.command,
        )
        for target in targets
    ]
    AuditEntry.objects.bulk_create(entries, batch_size=500)
    logger.info(
        "audit action=%s user=%s targets=%s",
        action,
        entries[0].username if entries and entries[0].username else "-",
        len(entries),
    )
    return len(entries)
