"""App configuration for card-order tracking."""

from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Card-order tracking"
    default_auto_field = "django.db.models.BigAutoField"
