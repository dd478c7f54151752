"""`manage.py create_api_token <username>`: a read-API token for an integration; shown once."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tracking.services.api_tokens import IssuersNotGranted, api_token_create
from tracking.services.audit import Actor


class Command(BaseCommand):
    help = (
        "Make a read-API token for a user. The token is printed once and stored only as a "
        "digest; it expires after --days (READ_API_TOKEN_LIFETIME_DAYS by default)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="integration", help="What the token is for.")
        parser.add_argument("--days", type=int, default=None, help="Days until it expires.")
        parser.add_argument(
            "--issuers",
            nargs="+",
            default=[],
            metavar="ISSUER_ID",
            help="Only these issuers (all granted to the user); default: all of the user's.",
        )

    def handle(
        self, *args, username: str, name: str, days: int | None, issuers: list[str], **options
    ) -> None:
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        if days is not None and days <= 0:
            raise CommandError("--days must be at least 1.")
        try:
            issued = api_token_create(
                user=user,
                name=name,
                lifetime=timedelta(days=days) if days else None,
                actor=Actor.of_command("manage.py create_api_token"),
                issuer_ids=issuers,
            )
        except IssuersNotGranted as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"token={issued.key}")
        self.stderr.write(
            f"Expires {issued.token.expires_at:%Y-%m-%d %H:%M} UTC. Copy it now: it is not kept."
        )
