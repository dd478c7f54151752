"""`manage.py alerts`: print the alerts operators should see now; exit 2 if one is critical.

For a cron job or a monitoring agent on a machine without Prometheus.
"""

from django.core.management.base import BaseCommand, CommandError

from tracking.observability.alerts import CRITICAL, alerts_current


class Command(BaseCommand):
    help = "Print the active alerts (inbound silence, refusals, stuck orders, reconciliation)."

    def handle(self, *args, **options) -> None:
        alerts = alerts_current()
        for alert in alerts:
            self.stdout.write(
                f"{alert.severity:8} {alert.kind:18} {alert.subject:20} "
                f"{alert.title}: {alert.message}"
            )
        if not alerts:
            self.stdout.write("no active alert")
        if any(alert.severity == CRITICAL for alert in alerts):
            raise CommandError("critical alert(s) active", returncode=2)
