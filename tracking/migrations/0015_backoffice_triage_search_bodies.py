"""Triage (who took an order, the Exceptions list in flagged order), accepted bodies kept, and
the search's partial-id indexes.

On PostgreSQL, a trigram GIN index on `UPPER(col)` for the card id, the issuer request id and
the tracking number: Django's `icontains` and `iendswith` compile to `UPPER(col::text) LIKE
UPPER('%...')`, which such an index serves ("contains" and "ends with" alike). SQLite has no
trigram index and migrates through that part as a no-op.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TRIGRAM_COLUMNS = {
    "order_card_id_trgm": "card_id",
    "order_issuer_request_id_trgm": "issuer_request_id",
    "order_tracking_number_trgm": "tracking_number",
}
CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    *(
        f"CREATE INDEX IF NOT EXISTS {name} ON tracking_cardorder "
        f"USING gin (UPPER({column}::text) gin_trgm_ops)"
        for name, column in TRIGRAM_COLUMNS.items()
    ),
]
DROP = [f"DROP INDEX IF EXISTS {name}" for name in TRIGRAM_COLUMNS]


def run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0014_order_recent_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="cardorder",
            name="assignee",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="assigned_orders",
                to=settings.AUTH_USER_MODEL,
                verbose_name="taken by",
            ),
        ),
        migrations.AlterField(
            model_name="notificationdelivery",
            name="body",
            field=models.TextField(blank=True, verbose_name="body as received"),
        ),
        migrations.AlterField(
            model_name="notificationdelivery",
            name="body_truncated",
            field=models.BooleanField(
                default=False,
                help_text="The body was longer than the portal keeps; only its start is stored.",
                verbose_name="body cut short",
            ),
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
                    ("shipment_status__in", ["RETURNED", "RETURNED_TO_SENDER"]),
                    models.Q(("exception_reason", ""), _negated=True),
                    _connector="OR",
                ),
                fields=["exception_changed_at", "id"],
                name="order_exception_flagged",
            ),
        ),
        migrations.RunPython(run(CREATE), run(DROP), elidable=False),
    ]
