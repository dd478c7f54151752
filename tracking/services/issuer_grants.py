"""Which issuers a staff user (or a read-API token) may see and act on, and the filters that say so.

Every staff user holds grants (`IssuerGrant`), one per issuer; superusers see every issuer
without any. A read-API token acts with its user's grant, narrowed to the issuers chosen when it
was made, if any. Anything of an issuer outside the grant answers as if it did not exist: the
querysets below leave it out, and `*_or_404` raise Http404 with the message a missing row gets.

The admin, the read API, registration, look-up, reconcile now, the dashboard and the insight
pages all filter through this module; `issuers_grant` and `issuers_revoke` change grants and
audit the change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import CharField, Exists, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import Http404

from tracking.models import (
    ISSUER_ID_PATTERN,
    AuditEntry,
    CardOrder,
    D1Client,
    Issuer,
    IssuerGrant,
    NotificationDelivery,
    OperationEvent,
    ReadApiToken,
    ReconcileAttempt,
)
from tracking.services.audit import Actor, audit_actor


class AllIssuers:
    """The grant of a superuser: every issuer, present and future."""

    def __contains__(self, issuer_id: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALL"


ALL = AllIssuers()

# The message Django and DRF give for a row that does not exist: an issuer outside the grant
# gets the very same one.
NOT_FOUND = "No such object."


def _token_of(token: Any) -> ReadApiToken | None:
    return token if isinstance(token, ReadApiToken) else None


def sees_every_issuer(user, *, token: Any = None) -> bool:
    """Superusers acting in a session; through a token, the filters below decide."""
    if not (user is not None and user.is_authenticated and user.is_active and user.is_superuser):
        return False
    return _token_of(token) is None


def _granted_issuers(user, *, token: Any = None) -> QuerySet[Issuer]:
    """The issuers granted, as a queryset (usable as a subquery); all of them for superusers."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Issuer.objects.none()
    issuers = Issuer.objects.all()
    if not user.is_superuser:
        issuers = issuers.filter(grants__user=user)
    narrowed = _token_of(token)
    if narrowed is not None:
        # Within the SQL, so that a request costs no query more: the token's issuers when it
        # was narrowed, else all of the user's.
        chosen = ReadApiToken.issuers.through.objects.filter(readapitoken_id=narrowed.pk)
        issuers = issuers.filter(
            Q(pk__in=chosen.values("issuer_id")) | ~Exists(chosen.values("pk"))
        )
    return issuers


def issuers_granted(user, *, token: Any = None) -> set[str] | AllIssuers:
    """The D1 issuer ids `user` (acting through `token`, if given) may see, or ALL."""
    if sees_every_issuer(user, token=token):
        return ALL
    return set(_granted_issuers(user, token=token).values_list("issuer_id", flat=True))


def visible_to(
    user,
    queryset: QuerySet,
    *,
    path: str = "issuer",
    token: Any = None,
    or_no_issuer: bool = False,
) -> QuerySet:
    """`queryset` without the rows of issuers outside the grant.

    `path` leads from the queryset's model to its Issuer ("issuer", "order__issuer"; "" for
    the Issuer model itself). `or_no_issuer` keeps the rows that belong to no issuer at all
    (an OAuth application that is not a D1 client's).
    """
    if sees_every_issuer(user, token=token):
        return queryset
    granted = _granted_issuers(user, token=token).values("pk")
    condition = Q(**{f"{path}__in" if path else "pk__in": granted})
    if or_no_issuer:
        condition |= Q(**{f"{path}__isnull": True})
    return queryset.filter(condition)


def visible_with_unknown_issuer(
    user, queryset: QuerySet, *, path: str | None, id_in_path: str, token: Any = None
) -> QuerySet:
    """Rows of a granted issuer, and rows whose issuer is unknown (`path` empty, or no `path`
    at all) unless the issuer id they name (`id_in_path`) is that of a registered issuer
    outside the grant.

    For what D1 sent or tried to send: a refused call for an issuer nobody registered gives
    nothing of any issuer away; one that names a registered issuer belongs to that issuer.
    """
    if sees_every_issuer(user, token=token):
        return queryset
    granted = _granted_issuers(user, token=token)
    outside = Issuer.objects.exclude(pk__in=granted.values("pk")).values("issuer_id")
    not_outside = ~Q(**{f"{id_in_path}__in": outside})
    if path is None:  # only the id it was called with is known
        return queryset.filter(not_outside)
    unknown = Q(**{f"{path}__isnull": True}) & not_outside
    return queryset.filter(Q(**{f"{path}__in": granted.values("pk")}) | unknown)


def audit_visible_to(user, queryset: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
    """The audit entries `user` may read: none about an order, issuer, D1 client, call to D1 or
    message of an issuer outside the grant, nor one whose details name such an issuer."""
    if sees_every_issuer(user):
        return queryset
    granted = _granted_issuers(user).values("pk")
    outside = Issuer.objects.exclude(pk__in=granted)
    # has_key first: a missing key reads as NULL, and NOT (NULL IN ...) would hide the entry.
    hidden = Q(details__has_key="issuer") & Q(named_issuer__in=outside.values("issuer_id"))
    for model, path in (
        (CardOrder, "issuer"),
        (Issuer, ""),
        (D1Client, "issuer"),
        (ReconcileAttempt, "order__issuer"),
        (NotificationDelivery, "issuer"),
        (OperationEvent, "issuer"),
    ):
        rows = model.objects.filter(**{f"{path}__in" if path else "pk__in": outside.values("pk")})
        # target_id holds the primary key as text.
        ids = rows.annotate(pk_text=Cast("pk", CharField())).values("pk_text")
        hidden |= Q(target_type=model._meta.label_lower, target_id__in=ids)
    # As text (PostgreSQL compares jsonb with jsonb only).
    return queryset.alias(named_issuer=KT("details__issuer")).exclude(hidden)


def orders_visible_to(
    user, queryset: QuerySet[CardOrder] | None = None, *, token: Any = None
) -> QuerySet[CardOrder]:
    """The card orders `user` may see (of `queryset`, all orders by default)."""
    if queryset is None:
        queryset = CardOrder.objects.all()
    return visible_to(user, queryset, path="issuer", token=token)


def issuers_visible_to(
    user, queryset: QuerySet[Issuer] | None = None, *, token: Any = None
) -> QuerySet[Issuer]:
    """The issuers `user` may see (of `queryset`, all issuers by default)."""
    if queryset is None:
        queryset = Issuer.objects.all()
    return visible_to(user, queryset, path="", token=token)


def issuer_visible_or_404(
    user, issuer_id: str, *, token: Any = None, active_only: bool = False
) -> Issuer:
    """The Issuer with D1 id `issuer_id` if `user` may see it; else Http404, as for no issuer."""
    issuers = issuers_visible_to(user, token=token)
    if active_only:
        issuers = issuers.filter(is_active=True)
    issuer = issuers.filter(issuer_id=issuer_id).first() if isinstance(issuer_id, str) else None
    if issuer is None:
        raise Http404(NOT_FOUND)
    return issuer


def order_visible_or_404(
    user, pk: Any, *, queryset: QuerySet[CardOrder] | None = None, token: Any = None
) -> CardOrder:
    """The card order `pk` if `user` may see it; else Http404, as for no order."""
    try:
        order = orders_visible_to(user, queryset, token=token).filter(pk=int(pk)).first()
    except (TypeError, ValueError, OverflowError):
        order = None
    if order is None:
        raise Http404(NOT_FOUND)
    return order


def active_issuers_granted(user, issuer_ids: Iterable[Any], *, token: Any = None) -> dict:
    """The active issuers among `issuer_ids` that `user` may act on, by D1 id, in one query.

    Registration checks rows against this map: an issuer outside the grant is refused with the
    very words an unknown one gets.
    """
    # Only ids in D1's format reach the query: a NUL or a surrogate is no issuer, and no
    # column can even be compared with it.
    wanted = {
        i.strip()
        for i in issuer_ids
        if isinstance(i, str) and re.fullmatch(ISSUER_ID_PATTERN, i.strip())
    }
    issuers = issuers_visible_to(user, token=token).filter(issuer_id__in=wanted, is_active=True)
    return {issuer.issuer_id: issuer for issuer in issuers}


def issuer_choices(user, *, active_only: bool = True) -> list[tuple[str, str]]:
    """(D1 id, label) of the issuers `user` may act on, for a form's issuer field."""
    issuers = issuers_visible_to(user)
    if active_only:
        issuers = issuers.filter(is_active=True)
    return [(issuer.issuer_id, str(issuer)) for issuer in issuers]


# ---------------------------------------------------------------------------- changing grants


def _issuers_named(issuer_ids: Iterable[str]) -> tuple[list[Issuer], list[str]]:
    wanted = list(dict.fromkeys(issuer_ids))
    found = {i.issuer_id: i for i in Issuer.objects.filter(issuer_id__in=wanted)}
    return [found[i] for i in wanted if i in found], [i for i in wanted if i not in found]


class UnknownIssuers(ValueError):
    """Some issuer ids name no registered issuer."""

    def __init__(self, issuer_ids: list[str]) -> None:
        self.issuer_ids = issuer_ids
        super().__init__(f"No issuer {', '.join(issuer_ids)}.")


def issuers_grant(*, user, issuer_ids: Iterable[str], actor: Actor) -> list[str]:
    """Grant `user` the issuers `issuer_ids`; return those that were not granted before.

    Writes one IssuerGrant per new issuer and one `issuer_grant.add` audit entry (on the user,
    naming the issuers) when any is new. Raises UnknownIssuers, granting nothing, when an id
    names no issuer.
    """
    issuers, unknown = _issuers_named(issuer_ids)
    if unknown:
        raise UnknownIssuers(unknown)
    with transaction.atomic():
        held = set(IssuerGrant.objects.filter(user=user).values_list("issuer_id", flat=True))
        new = [issuer for issuer in issuers if issuer.pk not in held]
        IssuerGrant.objects.bulk_create(
            [IssuerGrant(user=user, issuer=issuer) for issuer in new], ignore_conflicts=True
        )
        added = [issuer.issuer_id for issuer in new]
        if added:
            audit_actor(
                actor,
                action="issuer_grant.add",
                targets=[user],
                details={"for_user": user.get_username(), "issuers": added},
            )
    return added


def issuers_revoke(*, user, issuer_ids: Iterable[str], actor: Actor) -> list[str]:
    """Take the issuers `issuer_ids` back from `user`; return those that were granted.

    Deletes their IssuerGrant rows and writes one `issuer_grant.remove` audit entry when any
    was held. Raises UnknownIssuers, revoking nothing, when an id names no issuer.
    """
    issuers, unknown = _issuers_named(issuer_ids)
    if unknown:
        raise UnknownIssuers(unknown)
    with transaction.atomic():
        grants = IssuerGrant.objects.filter(user=user, issuer__in=issuers)
        removed = sorted(grants.values_list("issuer__issuer_id", flat=True))
        grants.delete()
        if removed:
            audit_actor(
                actor,
                action="issuer_grant.remove",
                targets=[user],
                details={"for_user": user.get_username(), "issuers": removed},
            )
    return removed


def issuers_set(*, user, issuers: Iterable[Issuer], actor: Actor) -> tuple[list[str], list[str]]:
    """Make `user`'s grant exactly `issuers` (the user's admin page); return (added, removed)."""
    wanted = {issuer.issuer_id for issuer in issuers}
    held = set(IssuerGrant.objects.filter(user=user).values_list("issuer__issuer_id", flat=True))
    with transaction.atomic():
        added = issuers_grant(user=user, issuer_ids=sorted(wanted - held), actor=actor)
        removed = issuers_revoke(user=user, issuer_ids=sorted(held - wanted), actor=actor)
    return added, removed
