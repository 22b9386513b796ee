"""The latency histogram beside the rollups, filled from the records; the records' latency
index goes (the histogram answers the model page's percentiles); a covering partial index
for the errors page's unsupported-parameter findings."""

from zoneinfo import ZoneInfo

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import TruncDate

from usage.latency import bucket_of

# What 0009 created, per database (for going backwards).
LATENCY_INDEX = {
    "postgresql": "CREATE INDEX IF NOT EXISTS usage_model_latency_idx ON usage_usagerecord "
    "(account_id, model, occurred_at) INCLUDE (latency_ms) WHERE latency_ms IS NOT NULL",
    "sqlite": "CREATE INDEX IF NOT EXISTS usage_model_latency_idx ON usage_usagerecord "
    "(account_id, model, occurred_at, latency_ms) WHERE latency_ms IS NOT NULL",
}
# Migrations after this one that rebuild the records' table on SQLite restore this one.
RAW_SQLITE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS usage_failed_idx ON usage_usagerecord "
    "(account_id, occurred_at DESC, id DESC, error_cause, model) WHERE error_cause <> 'none'",
)


def restore_raw_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in RAW_SQLITE_INDEXES:
            schema_editor.execute(statement)


def fill_histogram(apps, schema_editor):
    """Every account's histogram from its records, days in the dashboard's time zone."""
    UsageRecord = apps.get_model("usage", "UsageRecord")
    LatencyHistogram = apps.get_model("usage", "LatencyHistogram")
    zone = ZoneInfo(settings.DASHBOARD_TIME_ZONE)
    rows = (
        UsageRecord.objects.filter(latency_ms__isnull=False)
        .annotate(day=TruncDate("occurred_at", tzinfo=zone))
        .values_list("account_id", "model", "day", "latency_ms")
        .annotate(requests=Count("id"))
        .order_by()
    )
    counts = {}
    for account_id, model, day, latency_ms, requests in rows.iterator(chunk_size=10_000):
        group = (account_id, model, day, bucket_of(latency_ms))
        counts[group] = counts.get(group, 0) + requests
    LatencyHistogram.objects.bulk_create(
        (
            LatencyHistogram(account_id=account, model=model, day=day, bucket=bucket, requests=requests)
            for (account, model, day, bucket), requests in counts.items()
        ),
        batch_size=2000,
    )


def drop_latency_index(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS usage_model_latency_idx")


def restore_latency_index(apps, schema_editor):
    schema_editor.execute(LATENCY_INDEX[schema_editor.connection.vendor])


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0072_team_relabel"),
    ]

    operations = [
        migrations.CreateModel(
            name="LatencyHistogram",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("model", models.CharField(max_length=200)),
                ("day", models.DateField()),
                ("bucket", models.SmallIntegerField()),
                ("requests", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddIndex(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(("error_cause", "unsupported_parameter")),
                fields=["account", "occurred_at"],
                include=("model", "request_params"),
                name="usage_unsupported_idx",
            ),
        ),
        migrations.AddField(
            model_name="latencyhistogram",
            name="account",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="usage.account"
            ),
        ),
        migrations.AddConstraint(
            model_name="latencyhistogram",
            constraint=models.UniqueConstraint(
                fields=("account", "model", "day", "bucket"), name="latencyhistogram_unique_bucket"
            ),
        ),
        migrations.RunPython(fill_histogram, migrations.RunPython.noop),
        migrations.RunPython(drop_latency_index, restore_latency_index),
    ]
