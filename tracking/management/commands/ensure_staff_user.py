"""`manage.py ensure_staff_user <username> --password ...`: create or reset a staff login."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracking.services.roles import ADMINISTRATORS, OPERATORS, VIEWERS, roles_ensure

ROLES = (VIEWERS, OPERATORS, ADMINISTRATORS)


class Command(BaseCommand):
    help = (
        "Create a staff user, or reset its password if it exists (for demos and set-up). "
        "--role puts it in exactly that role's group; grant its issuers with grant_issuers."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument("--superuser", action="store_true")
        parser.add_argument("--role", choices=ROLES, help="viewers, operators or administrators.")

    def handle(
        self,
        *args,
        username: str,
        password: str,
        email: str,
        superuser: bool,
        role: str | None,
        **opts,
    ):
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": email}
        )
        user.is_staff = True
        user.is_superuser = user.is_superuser or superuser
        user.set_password(password)
        user.save()
        if role is not None:
            groups = roles_ensure()
            # One role: the others' groups go, so that a demotion takes effect.
            user.groups.remove(*(groups[name] for name in ROLES if name != role))
            user.groups.add(groups[role])
        self.stdout.write(
            f"{'Created' if created else 'Updated'} staff user {username}"
            + (f" ({role})" if role else "")
        )
