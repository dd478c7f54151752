"""`manage.py setup_roles`: the viewers, operators and administrators groups (idempotent)."""

from django.core.management.base import BaseCommand

from tracking.services.roles import roles_ensure


class Command(BaseCommand):
    help = "Create or repair the staff groups so that each holds exactly its permissions."

    def handle(self, *args, **options) -> None:
        for name, group in roles_ensure().items():
            self.stdout.write(f"{name}: {group.permissions.count()} permissions")
