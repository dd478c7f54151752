"""App configuration for card-order tracking."""

from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Card-order tracking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The reconcile attempts' admin lives beside tracking/admin.py, which autodiscovery
        # imports; this registers it on the same site.
        from tracking import admin_reconcile  # noqa: F401
