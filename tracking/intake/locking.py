"""The lock order of every write to card orders and events, and the one way to take those locks.

Every path that writes card orders and events takes its row locks in one global order, so that
two transactions never wait for each other in a cycle (PostgreSQL would abort one of them, and
the webhook would answer 503):

1. card orders, by (issuer, card_id, operation_id);
2. then events, by (issuer, fingerprint), each set in one statement.

A batch made only of copies of stored items locks its events and nothing after them, so a retry
storm never queues on an order's row lock. Inside one PostgreSQL statement the order holds too
(`tracking.intake.ingest.postgres`): a sub-statement that must come after a lock reads the
locking CTE through an uncorrelated subquery, which runs to its end first; and the events are
read in the statement after the one that locks their orders, so that they include what the
previous holder of those locks wrote. Ingest, reconciliation (`order_reconcile` locks its
card's orders first), the registration join, the card-level pass (`cards_after_ingest`),
`refresh_orders`, `rederive` and the retention compaction all follow it.

Locks are taken only inside a transaction: outside one they would be released at once and
protect nothing, so asking for them there raises `LockOutsideTransaction`, on every backend.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import QuerySet

from tracking.models import CardOrder, Issuer, OperationEvent

# How card orders are locked: every set of them in this order, in one statement.
ORDER_LOCK_ORDER = ("issuer_id", "card_id", "operation_id")
# How events are locked, after the orders.
EVENT_LOCK_ORDER = ("issuer_id", "fingerprint")


class LockOutsideTransaction(RuntimeError):
    """A row lock was asked for outside a transaction (it would protect nothing)."""


def transaction_required() -> None:
    """Raise `LockOutsideTransaction` unless a transaction is open on the connection."""
    if not connection.in_atomic_block:
        raise LockOutsideTransaction("Row locks are taken only inside a transaction.")


def orders_locked(
    orders: QuerySet[CardOrder], *, skip_locked: bool = False, no_key: bool = False
) -> QuerySet[CardOrder]:
    """`orders` locked in the lock order, when the query runs; raises outside a transaction.

    `skip_locked` leaves out orders another transaction holds (where the backend can);
    `no_key` takes the weaker lock that does not block inserts referring to the orders.
    """
    transaction_required()
    orders = orders.order_by(*ORDER_LOCK_ORDER)
    if not connection.features.has_select_for_update:
        return orders  # SQLite: the transaction's write lock serialises writers
    if skip_locked and not connection.features.has_select_for_update_skip_locked:
        return orders  # the caller asked not to wait: it reads without locking instead
    return orders.select_for_update(skip_locked=skip_locked, no_key=no_key and _has_no_key())


def card_orders_lock(*, issuer: Issuer, card_ids: Iterable[str]) -> list[int]:
    """Lock every order of `card_ids` at `issuer`, in the lock order; return their ids."""
    orders = CardOrder.objects.filter(issuer=issuer, card_id__in=sorted(set(card_ids)))
    return list(orders_locked(orders).values_list("id", flat=True))


def events_locked(events: QuerySet[OperationEvent], *, lock: bool = True):
    """The event rows re-derivation reads, in fingerprint order, locked when `lock`.

    A locked read raises outside a transaction.
    """
    events = events.order_by("fingerprint")
    if lock:
        transaction_required()
        if connection.features.has_select_for_update:
            events = events.select_for_update()
    return events.values_list(
        "id",
        "order_id",
        "fingerprint",
        "first_received_at",
        "last_received_at",
        "payload",
        "outcome",
        "applied_at",
    )


def for_update_clause() -> str:
    """The SQL that locks the rows a sub-select reads, where the backend has row locks."""
    transaction_required()
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def _has_no_key() -> bool:
    return connection.features.has_select_for_no_key_update
