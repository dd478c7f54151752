"""`manage.py grant_issuers <username> <issuer id> [...]`: the issuers a staff user may see."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tracking.services.audit import Actor
from tracking.services.issuer_grants import UnknownIssuers, issuers_grant, issuers_revoke


class Command(BaseCommand):
    help = (
        "Grant a user the issuers it may see and act on (orders, messages, calls to D1, "
        "registration, look-up), or take them back with --revoke. Each change is audited."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("issuer_ids", nargs="+", metavar="ISSUER_ID")
        parser.add_argument(
            "--revoke", action="store_true", help="Take these issuers back instead."
        )

    def handle(self, *args, username: str, issuer_ids: list[str], revoke: bool, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        actor = Actor.of_command("manage.py grant_issuers")
        change = issuers_revoke if revoke else issuers_grant
        try:
            changed = change(user=user, issuer_ids=issuer_ids, actor=actor)
        except UnknownIssuers as exc:
            raise CommandError(str(exc)) from exc
        verb = "Revoked" if revoke else "Granted"
        if changed:
            self.stdout.write(f"{verb} {' '.join(changed)} for {username}.")
        else:
            self.stdout.write(f"Nothing to change for {username}.")
        if user.is_superuser:
            self.stderr.write(f"{username} is a superuser and sees every issuer regardless.")
