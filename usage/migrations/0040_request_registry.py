# The registry of request ids: (account, request_id) becomes unique there instead of on the
# records, which are partitioned by month on PostgreSQL (a partitioned table's unique indexes
# must include the partition key). Backfilled from the records before their constraint goes.

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
INSERT INTO usage_registeredrequest (account_id, request_id, occurred_at, content_hash)
SELECT account_id, request_id, occurred_at, content_hash FROM usage_usagerecord
"""


# SQLite rebuilds the table to change its constraints or indexes, and the rebuilt table has
# only the indexes of the model state: the two created in raw SQL (0007, 0009) come back here.
RAW_SQLITE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS usage_failed_idx ON usage_usagerecord "
    "(account_id, occurred_at DESC, id DESC, error_cause, model) WHERE error_cause <> 'none'",
    "CREATE INDEX IF NOT EXISTS usage_model_latency_idx ON usage_usagerecord "
    "(account_id, model, occurred_at, latency_ms) WHERE latency_ms IS NOT NULL",
)


def restore_raw_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in RAW_SQLITE_INDEXES:
            schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('usage', '0030_model_catalogue'),
    ]

    operations = [
        migrations.CreateModel(
            name='RegisteredRequest',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('request_id', models.CharField(max_length=200)),
                ('occurred_at', models.DateTimeField()),
                ('content_hash', models.CharField(max_length=64)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='usage.account')),
            ],
        ),
        migrations.AddConstraint(
            model_name='registeredrequest',
            constraint=models.UniqueConstraint(fields=('account', 'request_id'), name='registeredrequest_unique_request'),
        ),
        # The records' unique constraint held, so every (account, request_id) is there once.
        migrations.RunSQL(BACKFILL, reverse_sql="DELETE FROM usage_registeredrequest"),
        # Both ways: backwards, the rebuild comes after this point.
        migrations.RunPython(migrations.RunPython.noop, restore_raw_indexes, elidable=False),
        migrations.RemoveConstraint(
            model_name='usagerecord',
            name='usagerecord_unique_request',
        ),
        migrations.RunPython(restore_raw_indexes, migrations.RunPython.noop, elidable=False),
    ]
