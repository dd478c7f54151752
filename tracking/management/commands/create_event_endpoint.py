"""`manage.py create_event_endpoint ISSUER_ID URL [--types T ...]`: prints the secret once."""

from django.core.management.base import BaseCommand, CommandError

from tracking.models import Issuer
from tracking.models.outbound import EVENT_TYPES
from tracking.outbound.addresses import AddressRefused
from tracking.services.audit import Actor
from tracking.services.event_endpoints import UnknownEventType, endpoint_create


class Command(BaseCommand):
    help = (
        "Add an endpoint that receives an issuer's card-order events, signed (Standard "
        "Webhooks). Prints the signing secret once as secret=whsec_…; it is not shown again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("issuer_id")
        parser.add_argument("url")
        parser.add_argument(
            "--types",
            nargs="+",
            default=[],
            metavar="TYPE",
            help=f"Event types to send (default: all): {', '.join(EVENT_TYPES)}.",
        )
        parser.add_argument("--description", default="")

    def handle(self, *args, issuer_id: str, url: str, types, description: str, **options):
        issuer = Issuer.objects.filter(issuer_id=issuer_id).first()
        if issuer is None:
            raise CommandError(f"No issuer {issuer_id!r}.")
        try:
            endpoint, secret = endpoint_create(
                issuer=issuer,
                url=url,
                event_types=types,
                description=description,
                actor=Actor.of_command("manage.py create_event_endpoint"),
            )
        except AddressRefused as exc:
            raise CommandError(str(exc)) from exc
        except UnknownEventType as exc:
            known = ", ".join(EVENT_TYPES)
            raise CommandError(f"Unknown event type {exc}; known: {known}.") from exc
        self.stdout.write(f"endpoint={endpoint.pk}")
        self.stdout.write(f"secret={secret}")
        self.stderr.write("Copy the secret now: it is not shown again.")
