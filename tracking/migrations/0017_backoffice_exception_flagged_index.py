"""The Exceptions list's flagged-order index follows the exception rule as the carrier classes
made it (`conditions.exception_q`)."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0016_merge_backoffice_real_rules"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="cardorder",
            name="order_exception_flagged",
        ),
        migrations.AddIndex(
            model_name="cardorder",
            index=models.Index(
                condition=models.Q(
                    ("production_status__in", ["CARD_PROD_EXCEPTION", "DATA_EXCEPTION"]),
                    models.Q(
                        ("operation_status", "FAILED"),
                        models.Q(("production_status__in", ["CARD_PROD_CANCELED"]), _negated=True),
                    ),
                    ("has_conflict", True),
                    ("has_unknown_status", True),
                    models.Q(("error_code", ""), _negated=True),
                    ("production_status__in", ["CARD_RETURNED"]),
                    ("shipment_class__in", ["returned"]),
                    ("shipment_class__in", ["exception", "returned"]),
                    models.Q(("exception_reason", ""), _negated=True),
                    _connector="OR",
                ),
                fields=["exception_changed_at", "id"],
                name="order_exception_flagged",
            ),
        ),
    ]
