"""App configuration for card-order tracking."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _ensure_roles(sender, apps=None, **kwargs) -> None:
    # Only once the audit trail's table exists (not while migrating backwards past it).
    try:
        if apps is not None:
            apps.get_model("tracking", "AuditEntry")
    except LookupError:
        return
    from tracking.services.roles import roles_ensure

    roles_ensure()


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = _("Card-order tracking")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # trust: audit signals, staff groups after migrate.
        from tracking import signals  # noqa: F401
        from tracking.services import preferences  # noqa: F401  (sign-in carries the choice)

        post_migrate.connect(_ensure_roles, sender=self, dispatch_uid="tracking-roles")
        # The admin's autodiscovery (django.contrib.admin's ready, earlier in INSTALLED_APPS)
        # has registered every app's pages by now: give the other apps' the lookup rule too.
        from django.contrib import admin

        from tracking.admin.security import lookup_rule_everywhere

        lookup_rule_everywhere(admin.site)
