"""`manage.py reconcile [ORDER_ID ...] [--due] [--all] [--card ISSUER/CARD] [--dry-run]`: ask D1."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracking.domain.d1_items import details_of
from tracking.models import CardOrder, ReconcileTrigger
from tracking.services.audit import Actor
from tracking.services.reconcile import (
    ReconcileResult,
    order_due_reason,
    orders_due_for_reconcile,
    orders_open_for_reconcile,
    orders_reconcile_now,
    reconcile_sweep,
)

# Audit entries of what this command does carry its name where a user's would be.
_COMMAND = Actor.of_command("manage.py reconcile")


class Command(BaseCommand):
    help = (
        "Reconcile card orders with D1's productionStatus: the given order ids, --due (what the "
        "sweep would pick) or --all (every order not in a final state). Queues tasks for the "
        "workers unless --inline; --dry-run only lists the orders. --card ISSUER/CARD looks any "
        "card up at D1 now (known to the portal or not), folds the answer in and prints it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("order_ids", nargs="*", type=int, metavar="ORDER_ID")
        parser.add_argument("--due", action="store_true", help="the orders the sweep would pick")
        parser.add_argument(
            "--all",
            action="store_true",
            dest="every",
            help="every order not in a final state, shipped orders awaiting delivery included",
        )
        parser.add_argument(
            "--card",
            metavar="ISSUER/CARD",
            help="look this card up at D1 (productionStatus), here and now; audited",
        )
        parser.add_argument("--dry-run", action="store_true", help="list, change nothing")
        parser.add_argument("--inline", action="store_true", help="work here, not in a worker")

    def handle(self, *args, order_ids, due, every, card, dry_run, inline, **options) -> None:
        if sum([bool(order_ids), due, every, bool(card)]) != 1:
            raise CommandError("Give order ids, --due, --all or --card (exactly one of them).")
        if card:
            self._look_up(card)
            return
        now = timezone.now()

        if due and not dry_run:
            # The sweep's own path: claims keep it apart from a sweep running at the same time.
            result = reconcile_sweep(
                inline=inline, trigger=ReconcileTrigger.COMMAND, actor=_COMMAND
            )
            self._report(len(result.order_ids), result.results, inline=inline)
            return

        if due:
            orders = orders_due_for_reconcile(now=now)
        elif every:
            orders = orders_open_for_reconcile()
        else:
            orders = CardOrder.objects.filter(pk__in=order_ids).order_by("id")
            missing = set(order_ids) - set(orders.values_list("id", flat=True))
            if missing:
                raise CommandError(f"No such order: {', '.join(map(str, sorted(missing)))}")

        if dry_run:
            count = 0
            for order in orders.select_related("issuer").iterator():
                count += 1
                reason = order_due_reason(order=order, now=now) or "-"
                self.stdout.write(
                    f"{order.pk}\t{order.issuer.issuer_id}\t{order.card_id}\t"
                    f"{order.production_status or '-'}\t{reason}"
                )
            self.stdout.write(f"{count} orders would be reconciled.")
            return

        ids = list(orders.values_list("id", flat=True))
        results = orders_reconcile_now(
            order_ids=ids,
            actor=_COMMAND,
            inline=inline,
            trigger=ReconcileTrigger.COMMAND,
        )
        self._report(len(ids), results, inline=inline)

    def _look_up(self, card: str) -> None:
        from tracking.services.look_up import LookUpInputError, card_look_up

        issuer_id, _, card_id = card.partition("/")
        if not issuer_id or not card_id:
            raise CommandError("--card takes ISSUER/CARD, e.g. ISSUERX001/card-000123.")
        try:
            result = card_look_up(
                issuer_id=issuer_id,
                card_id=card_id,
                actor=_COMMAND,
                trigger=ReconcileTrigger.COMMAND,
            )
        except LookUpInputError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"D1 answered {result.http_status or 'nothing'}: {result.outcome}")
        if result.error:
            self.stdout.write(f"  {result.error}")
        for item in result.operations:
            details = details_of(item)
            self.stdout.write(
                f"  {item.get('operationId', '-')}\t{item.get('operation', '-')}\t"
                f"{item.get('status', '-')}\t{details.get('status', '-')}"
            )
        if result.order_id is None:
            self.stdout.write("No order of this card in the portal.")
        else:
            verb = "Created" if result.created else "Updated"
            self.stdout.write(f"{verb} order {result.order_id}.")
        if result.outcome == "error":
            raise CommandError("D1 could not be asked; see the error above.")

    def _report(self, count: int, results: list[ReconcileResult], *, inline: bool) -> None:
        if not inline:
            self.stdout.write(f"Queued {count} orders for reconciliation.")
            return
        for result in results:
            detail = f" ({result.error})" if result.error else ""
            self.stdout.write(f"{result.order_id}\t{result.outcome}{detail}")
        outcomes = Counter(result.outcome for result in results)
        summary = ", ".join(f"{name} {n}" for name, n in sorted(outcomes.items())) or "nothing"
        self.stdout.write(f"Reconciled {len(results)} orders: {summary}.")
