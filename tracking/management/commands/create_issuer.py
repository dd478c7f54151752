"""`manage.py create_issuer <issuerId> --name <name>`: register (or update) a D1 issuer."""

import re

from django.core.management.base import BaseCommand, CommandError

from tracking.models import ISSUER_ID_PATTERN, Issuer


class Command(BaseCommand):
    help = "Register a D1 issuer so that its notifications are accepted (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("issuer_id", help="The 10-character D1 issuerId.")
        parser.add_argument("--name", default="", help="A readable name for staff.")
        parser.add_argument(
            "--inactive", action="store_true", help="Register it switched off (answers 404)."
        )

    def handle(self, *args, issuer_id: str, name: str, inactive: bool, **options) -> None:
        if not re.fullmatch(ISSUER_ID_PATTERN, issuer_id):
            raise CommandError(f"{issuer_id!r} is not a D1 issuerId: exactly 10 letters or digits.")
        issuer, created = Issuer.objects.get_or_create(
            issuer_id=issuer_id, defaults={"name": name, "is_active": not inactive}
        )
        changed = []
        if name and issuer.name != name:
            issuer.name = name
            changed.append("name")
        if not created and issuer.is_active == inactive:
            issuer.is_active = not inactive
            changed.append("is_active")
        if changed:
            issuer.save(update_fields=changed)
        verb = "Registered" if created else ("Updated" if changed else "Already registered:")
        self.stdout.write(f"{verb} {issuer}")
