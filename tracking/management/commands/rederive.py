"""`manage.py rederive [--issuer ID] [--outdated] [--dry-run]`: re-fold orders by current rules."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tracking.domain.fold import RULES_VERSION
from tracking.intake.ingest.rederive import (
    RederiveReport,
    masked_identifiers_count,
    orders_rederive,
)
from tracking.models import Issuer


class Command(BaseCommand):
    help = (
        "Re-derive every card order from its stored events with the current rules (after a rule "
        "change), in batches; print how many orders change, per field, with examples."
    )

    def add_arguments(self, parser):
        parser.add_argument("--issuer", help="only the orders of this D1 issuer id")
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would change; write nothing"
        )
        parser.add_argument(
            "--outdated",
            action="store_true",
            help="only the orders derived by older rules (the stamp is below the current one)",
        )
        parser.add_argument("--batch-size", type=int, default=500, help="orders per transaction")
        parser.add_argument("--examples", type=int, default=3, help="examples shown per field")

    def handle(self, *args, **options):
        issuer = None
        if options["issuer"]:
            issuer = Issuer.objects.filter(issuer_id=options["issuer"]).first()
            if issuer is None:
                raise CommandError(f"no issuer {options['issuer']!r}")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        report = orders_rederive(
            issuer=issuer,
            outdated_only=options["outdated"],
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
            examples=options["examples"],
            progress=self._progress if options["verbosity"] >= 1 else None,
        )
        if options["verbosity"] >= 1 or report.changed:
            self._summary(report)
        if options["dry_run"]:
            masked = masked_identifiers_count(issuer=issuer)
            # Re-deriving cannot bring these back: the digits were never stored.
            self.stdout.write(
                f"Ids masked by an older release (cannot be restored): "
                f"{masked.orders} order{'s' if masked.orders != 1 else ''}, "
                f"{masked.events} event{'s' if masked.events != 1 else ''}."
            )

    def _progress(self, report: RederiveReport) -> None:
        share = report.seen / report.total if report.total else 1
        self.stderr.write(
            f"rederive: {report.seen}/{report.total} orders ({share:.0%}), {report.changed} changed"
        )

    def _summary(self, report: RederiveReport) -> None:
        mode = "dry run, nothing written" if report.dry_run else "written"
        self.stdout.write(
            f"Re-derived {report.seen} orders with rules v{RULES_VERSION} ({mode}).\n"
            f"Orders whose state changes: {report.changed}; "
            f"only re-stamped: {report.restamped}; "
            f"events whose outcome changes: {report.events_changed}."
        )
        for name, count in sorted(report.fields.items(), key=lambda kv: (-kv[1], kv[0])):
            self.stdout.write(f"  {name}: {count} order{'s' if count != 1 else ''}, e.g.")
            for change in report.examples.get(name, []):
                self.stdout.write(
                    f"    {change.order}: {_short(change.before)} -> {_short(change.after)}"
                )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
