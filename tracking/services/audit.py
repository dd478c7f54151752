"""The audit trail: who did what, to what, when and from where; append-only.

`audit_record` is the one way in. Operator actions (reconcile now, replay, acknowledge) call it
from their services or admin actions; changes to issuers, D1 clients, users, groups and
permissions are recorded by `tracking.signals` whatever screen or command made them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from django.db import models
from django.http import HttpRequest

from tracking.d1_access import client_address
from tracking.data_care import pan_mask_value
from tracking.models import AuditEntry

logger = logging.getLogger(__name__)


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


def _entry(*, user, action, target, request, details) -> AuditEntry:
    return AuditEntry(
        user=user,
        username=user.get_username() if user is not None else "",
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


def audit_record_many(
    *,
    user: Any,
    action: str,
    targets: Iterable[models.Model],
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one audit entry per target (a bulk action); return how many were written."""
    who = _who(user, request)
    entries = [
        _entry(user=who, action=action, target=target, request=request, details=details)
        for target in targets
    ]
    AuditEntry.objects.bulk_create(entries, batch_size=500)
    logger.info(
        "audit action=%s user=%s targets=%s",
        action,
        entries[0].username if entries else "-",
        len(entries),
    )
    return len(entries)
