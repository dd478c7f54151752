"""One leaf again: the back office's migrations beside the issuer grants and events (0018)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0018_merge_backoffice_main"),
        ("tracking", "0018_merge_grants_events"),
    ]

    operations = []
