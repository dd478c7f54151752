"""App configuration for observability: connects the metric and log receivers once Django is up."""

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "tracking.observability"
    label = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from tracking.observability import receivers

        receivers.receivers_connect()
