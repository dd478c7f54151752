"""One leaf again: the issuer grants and the real rules, each from its own 0015."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('tracking', '0015_grants_issuer_grants'),
        ('tracking', '0015_real_rules_carrier_classes_holds_zones'),
    ]

    operations = [
    ]
