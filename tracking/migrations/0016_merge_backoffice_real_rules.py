"""One leaf again: the back office's triage and search (0015) beside the carrier classes (0015)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0015_backoffice_triage_search_bodies"),
        ("tracking", "0015_real_rules_carrier_classes_holds_zones"),
    ]

    operations = []
