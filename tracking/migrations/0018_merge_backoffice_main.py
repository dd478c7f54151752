"""One leaf again: the back office's flagged-order index (0017) beside the outbound events (0017)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0017_backoffice_exception_flagged_index"),
        ("tracking", "0017_events_outbox"),
    ]

    operations = []
