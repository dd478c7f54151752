"""One leaf again: the issuer grants and the issuer side, each merged with the real rules."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('tracking', '0016_merge_grants_real_rules'),
        ('tracking', '0016_merge_issuer_side_real_rules'),
    ]

    operations = [
    ]
