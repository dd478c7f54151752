"""`manage.py create_d1_client <issuerId>`: the client D1 gets tokens with; secret shown once."""

from django.core.management.base import BaseCommand, CommandError

from tracking.d1.clients import d1_client_create
from tracking.models import Issuer


class Command(BaseCommand):
    help = (
        "Create the OAuth client D1 uses to get bearer tokens for one issuer. The secret is "
        "printed once and stored only as a hash."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("issuer_id", help="The 10-character D1 issuerId (registered).")
        parser.add_argument("--name", default="", help="A label for staff.")

    def handle(self, *args, issuer_id: str, name: str, **options) -> None:
        issuer = Issuer.objects.filter(issuer_id=issuer_id, is_active=True).first()
        if issuer is None:
            raise CommandError(f"No active issuer {issuer_id!r}; register it with create_issuer.")
        credentials = d1_client_create(issuer=issuer, name=name)
        self.stdout.write(f"client_id={credentials.client_id}")
        self.stdout.write(f"client_secret={credentials.client_secret}")
        self.stderr.write("Give both to D1's tenant configuration now: the secret is not kept.")
