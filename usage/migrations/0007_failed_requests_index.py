"""An index of failed requests only (about 3% of records in the benchmark data).

The errors page and the model page's errors card group the period's failed records by
cause, and the request log filters on failure or on one cause: without this index each
of them reads every record of the period (≈300 ms for 30 days of 1,000,000 records on
PostgreSQL); with it they read the failed ones alone, newest first, from the index
(PostgreSQL: cause and model included, so no table access at all).

Raw SQL rather than Meta.indexes so that the index carries no model state; the same
index as `models.Index(fields=["account", "-occurred_at", "-id"], include=["error_cause",
"model"], condition=~Q(error_cause="none"), name="usage_failed_idx")` should it move there.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

POSTGRESQL = (
    "CREATE INDEX IF NOT EXISTS usage_failed_idx ON usage_usagerecord "
    "(account_id, occurred_at DESC, id DESC) INCLUDE (error_cause, model) WHERE error_cause <> 'none'"
)
OTHER = (
    "CREATE INDEX IF NOT EXISTS usage_failed_idx ON usage_usagerecord "
    "(account_id, occurred_at DESC, id DESC, error_cause, model) WHERE error_cause <> 'none'"
)


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(POSTGRESQL if schema_editor.connection.vendor == "postgresql" else OTHER)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute("DROP INDEX IF EXISTS usage_failed_idx")


class Migration(migrations.Migration):
    dependencies = [("usage", "0006_estimatorfit")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
