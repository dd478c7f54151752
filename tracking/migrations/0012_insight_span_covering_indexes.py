"""The statistics of the insight refresh read a window of spans from two indexes alone.

On PostgreSQL `span_stage_left` also carries the site, carrier and duration (time in stage,
shipment time) and `span_shipped` the issuer, site, stage and time to shipment (the figures
the predictions use). SQLite has no INCLUDE: there the indexes are rebuilt as they were. The
model's state keeps the plain indexes (as `order_file_stage` in 0006), so that the system
checks on SQLite have nothing to warn about.
"""

from django.db import migrations, models


def covering(name, fields, include):
    return models.Index(fields=fields, name=name, include=include)


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0011_insight_covering_file_index_predicted_ship"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RemoveIndex(model_name="stagespan", name="span_stage_left"),
                migrations.RemoveIndex(model_name="stagespan", name="span_shipped"),
                migrations.AddIndex(
                    model_name="stagespan",
                    index=covering(
                        "span_stage_left",
                        ["stage", "left_at"],
                        ["production_site", "carrier", "duration_s"],
                    ),
                ),
                migrations.AddIndex(
                    model_name="stagespan",
                    index=covering(
                        "span_shipped",
                        ["shipped_at"],
                        ["issuer", "production_site", "stage", "to_ship_s"],
                    ),
                ),
            ],
        ),
    ]
