"""Insight at 1M orders: an index-only file page, and the orders list sorted by predicted ship.

- `order_file_stage` (0006) becomes a covering index on PostgreSQL: it also carries every column
  the file page's grouped count reads (finished, the exception rule of
  `order_queues.exception_q`, first and last event) and the order id (the join to the
  predictions), so the page reads the index alone instead of every order of the file.
  SQLite has no INCLUDE; its index stays as it was.
- `CardOrder.predicted_ship_date`, the p50 the insight refresh writes, with a partial index over
  the open orders and those still carrying a date (the "Open" queue sorted by it, both ways,
  with the admin's `-pk` tie-break; the refresh finds there the dates to copy or clear) that
  also carries what the refresh predicts from; filled from the predictions already made.
- `ProductionFile.predicted_orders` and `likely_late_orders`, written with the predictions, so the
  file page reads its forecast from the file's row rather than joining its orders' predictions.
"""

from django.db import migrations, models

FILE_COLUMNS = "(issuer_id, input_file_name, production_status, stage_entered_at)"
# Keep in step with exception_q: a column it reads that is missing here sends the page to the
# table again (slower, never wrong).
FILE_INCLUDE = (
    "(id, is_terminal, first_event_at, last_event_at, operation_status, has_conflict, "
    "has_unknown_status, error_code, shipment_status, exception_reason)"
)
COVERING = [
    "DROP INDEX IF EXISTS order_file_stage",
    f"CREATE INDEX order_file_stage ON tracking_cardorder {FILE_COLUMNS} INCLUDE {FILE_INCLUDE}",
]
PLAIN = [
    "DROP INDEX IF EXISTS order_file_stage",
    f"CREATE INDEX order_file_stage ON tracking_cardorder {FILE_COLUMNS}",
]

# What the refresh's prediction pass reads of each open order: with these, it reads this index
# alone (a few tens of MB) rather than the open orders scattered over the whole table.
PREDICTION_INPUTS = [
    "is_terminal",
    "issuer",
    "input_file_name",
    "production_site",
    "production_status",
    "stage_entered_at",
    "due_date",
]

FILL_PREDICTED = (
    "UPDATE tracking_cardorder SET predicted_ship_date = ("
    " SELECT p.p50 FROM tracking_orderprediction p WHERE p.order_id = tracking_cardorder.id)"
    " WHERE id IN (SELECT order_id FROM tracking_orderprediction)"
)


def on_postgresql(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0010_event_sources_webhook_and_on_demand"),
    ]

    operations = [
        migrations.RunPython(on_postgresql(COVERING), on_postgresql(PLAIN), elidable=False),
        migrations.AddField(
            model_name="cardorder",
            name="predicted_ship_date",
            field=models.DateField(blank=True, editable=False, null=True),
        ),
        migrations.RunSQL(FILL_PREDICTED, migrations.RunSQL.noop, elidable=False),
        migrations.AddField(
            model_name="productionfile",
            name="predicted_orders",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="productionfile",
            name="likely_late_orders",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        # Declared here, as order_file_stage is, so that CardOrder.Meta stays as it was.
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AddIndex(
                    model_name="cardorder",
                    index=models.Index(
                        fields=["predicted_ship_date", "-id"],
                        name="order_predicted_ship",
                        condition=models.Q(is_terminal=False)
                        | models.Q(predicted_ship_date__isnull=False),
                        include=PREDICTION_INPUTS,
                    ),
                ),
            ],
        ),
    ]
