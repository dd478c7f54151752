"""`manage.py ensure_staff_user <username> --password ...`: create or reset a staff login."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a staff user, or reset its password if it exists (for demos and set-up)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, *args, username: str, password: str, email: str, superuser: bool, **opts):
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": email}
        )
        user.is_staff = True
        user.is_superuser = user.is_superuser or superuser
        user.set_password(password)
        user.save()
        self.stdout.write(f"{'Created' if created else 'Updated'} staff user {username}")
