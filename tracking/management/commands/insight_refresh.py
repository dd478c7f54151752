"""Refresh the insight rollups now: stage spans and statistics, predictions, production files."""

from django.core.management.base import BaseCommand

from tracking.insight.refresh import insight_refresh


class Command(BaseCommand):
    help = "Refresh stage statistics, predicted ship dates and production files."

    def add_arguments(self, parser):
        parser.add_argument(
            "--full", action="store_true", help="Recompute every order, not only changed ones."
        )

    def handle(self, *args, full: bool = False, **options):
        result = insight_refresh(full=full)
        self.stdout.write(
            f"{result.orders} orders, {result.stats} statistics, {result.predictions} "
            f"predictions, {result.files} files in {result.seconds:.1f} s"
            + (" (full)" if result.full else "")
        )
