"""An index that answers a model's latency percentiles without reading the table.

The model page's latency card takes p50/p95 of one model's timed requests in the
period; the rollups keep only sums, so the percentiles read the records. With the
latency in the index (PostgreSQL: INCLUDE; elsewhere a trailing column) the database
reads them from the index alone. Raw SQL for the same reason as 0007.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

POSTGRESQL = (
    "CREATE INDEX IF NOT EXISTS usage_model_latency_idx ON usage_usagerecord "
    "(account_id, model, occurred_at) INCLUDE (latency_ms) WHERE latency_ms IS NOT NULL"
)
OTHER = (
    "CREATE INDEX IF NOT EXISTS usage_model_latency_idx ON usage_usagerecord "
    "(account_id, model, occurred_at, latency_ms) WHERE latency_ms IS NOT NULL"
)


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(POSTGRESQL if schema_editor.connection.vendor == "postgresql" else OTHER)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute("DROP INDEX IF EXISTS usage_model_latency_idx")


class Migration(migrations.Migration):
    dependencies = [("usage", "0008_daily_usage")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
