"""A trigram index for searching orders by part of their input file name, on PostgreSQL only.

Django's `icontains` compiles to `UPPER(col::text) LIKE UPPER('%...%')`, so the index is on
that expression. SQLite has no trigram index and migrates through this as a no-op.
"""

from django.db import migrations

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS order_input_file_name_trgm ON tracking_cardorder "
    "USING gin (UPPER(input_file_name::text) gin_trgm_ops)",
]
DROP = ["DROP INDEX IF EXISTS order_input_file_name_trgm"]


def run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("tracking", "0004_admin_acknowledgements")]

    operations = [migrations.RunPython(run(CREATE), run(DROP), elidable=False)]
