"""One leaf again: the issuer grants and the events outbox."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('tracking', '0017_events_outbox'),
        ('tracking', '0017_merge_grants_issuer_side'),
    ]

    operations = [
    ]
