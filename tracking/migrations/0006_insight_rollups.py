"""Insight rollups: stage spans and statistics, production files, predictions; the file index."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

# The file page's queries (counts per stage, medians of entry times, laggards) read one range
# of this index. Declared here rather than in CardOrder.Meta so the order model stays as it is;
# the same statement works on SQLite and PostgreSQL.
FILE_INDEX = (
    "CREATE INDEX IF NOT EXISTS order_file_stage ON tracking_cardorder "
    "(issuer_id, input_file_name, production_status, stage_entered_at)"
)
DROP_FILE_INDEX = "DROP INDEX IF EXISTS order_file_stage"

# The orders search offers the files whose name contains the term: a trigram index on the
# expression `icontains` compiles to, on PostgreSQL only (as 0005 for the orders).
FILE_NAME_TRIGRAM = (
    "CREATE INDEX IF NOT EXISTS file_name_trgm ON tracking_productionfile "
    "USING gin (UPPER(name::text) gin_trgm_ops)"
)
DROP_FILE_NAME_TRIGRAM = "DROP INDEX IF EXISTS file_name_trgm"


def on_postgresql(statement):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0005_order_file_name_trigram"),
    ]

    operations = [
        migrations.RunSQL(FILE_INDEX, DROP_FILE_INDEX, elidable=False),
        migrations.CreateModel(
            name="RollupState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=32, unique=True)),
                ("watermark", models.DateTimeField(blank=True, null=True)),
                ("refreshed_at", models.DateTimeField(blank=True, null=True)),
                ("seconds", models.FloatField(default=0.0)),
            ],
        ),
        migrations.CreateModel(
            name="OrderPrediction",
            fields=[
                (
                    "order",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="prediction",
                        serialize=False,
                        to="tracking.cardorder",
                    ),
                ),
                ("p50", models.DateField()),
                ("p90", models.DateField()),
                ("basis", models.CharField(max_length=16)),
                ("stage", models.CharField(max_length=64)),
                ("likely_late", models.BooleanField(default=False)),
                ("computed_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["p50"], name="prediction_p50"),
                    models.Index(
                        condition=models.Q(("likely_late", True)),
                        fields=["p50"],
                        name="prediction_late",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="ProductionFile",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=255)),
                ("orders", models.PositiveIntegerField(default=0)),
                ("stage_counts", models.JSONField(blank=True, default=dict)),
                ("shipped", models.PositiveIntegerField(default=0)),
                ("finished", models.PositiveIntegerField(default=0)),
                ("exceptions", models.PositiveIntegerField(default=0)),
                ("cancelled", models.PositiveIntegerField(default=0)),
                ("share_finished", models.FloatField(default=0.0)),
                ("first_event_at", models.DateTimeField(blank=True, null=True)),
                ("last_event_at", models.DateTimeField(blank=True, null=True)),
                ("predicted_p50", models.DateField(blank=True, null=True)),
                ("predicted_p90", models.DateField(blank=True, null=True)),
                ("refreshed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "issuer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tracking.issuer",
                    ),
                ),
            ],
            options={
                "ordering": ["-first_event_at", "-id"],
                "indexes": [
                    models.Index(fields=["-first_event_at"], name="file_recent"),
                    models.Index(fields=["share_finished"], name="file_share_finished"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("issuer", "name"), name="file_unique_per_issuer"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="StageSpan",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("production_site", models.CharField(blank=True, max_length=255)),
                ("carrier", models.CharField(blank=True, max_length=64)),
                ("stage", models.CharField(max_length=64)),
                ("entered_at", models.DateTimeField()),
                ("left_at", models.DateTimeField(blank=True, null=True)),
                ("duration_s", models.FloatField(blank=True, null=True)),
                ("shipped_at", models.DateTimeField(blank=True, null=True)),
                ("to_ship_s", models.FloatField(blank=True, null=True)),
                (
                    "issuer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tracking.issuer",
                    ),
                ),
                (
                    "order",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tracking.cardorder",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["order"], name="span_order"),
                    models.Index(fields=["stage", "left_at"], name="span_stage_left"),
                    models.Index(
                        fields=["production_site", "stage", "left_at"], name="span_site_stage_left"
                    ),
                    models.Index(fields=["carrier", "left_at"], name="span_carrier_left"),
                    models.Index(fields=["shipped_at"], name="span_shipped"),
                ],
            },
        ),
        migrations.CreateModel(
            name="StageStat",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("stage", "Time in stage, per production site"),
                            ("shipment", "Shipment to delivery, per carrier"),
                            ("to_ship", "Stage entry to shipment (predictions)"),
                        ],
                        max_length=16,
                    ),
                ),
                ("window_days", models.PositiveSmallIntegerField()),
                ("group", models.CharField(blank=True, max_length=255)),
                ("stage", models.CharField(max_length=64)),
                ("count", models.PositiveIntegerField()),
                ("p50_s", models.FloatField()),
                ("p90_s", models.FloatField()),
                ("computed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "issuer",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tracking.issuer",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["kind", "window_days"], name="stat_kind_window")],
            },
        ),
        migrations.RunPython(
            on_postgresql(FILE_NAME_TRIGRAM), on_postgresql(DROP_FILE_NAME_TRIGRAM), elidable=False
        ),
    ]
