"""`manage.py prune [--dry-run]`: apply the retention policy and print what was removed."""

from django.core.management.base import BaseCommand

from tracking.services.retention import retention_prune


class Command(BaseCommand):
    help = (
        "Remove what the RETENTION_* settings let go (old unreferenced deliveries, events that "
        "changed nothing in long-finished orders, old reconcile attempts, audit entries only "
        "when RETENTION_AUDIT_DAYS is set); print the counts."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be removed; remove nothing"
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        for line in retention_prune(dry_run=dry_run).lines():
            self.stdout.write(line)
