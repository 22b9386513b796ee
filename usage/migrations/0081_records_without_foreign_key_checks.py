# The usage records keep their references without a foreign-key check per row written (the
# model's comment says why). On SQLite each change rebuilds the table: the index made in raw
# SQL comes back after it, both ways (see 0080).
from importlib import import_module

import django.db.models.deletion
from django.db import migrations, models

restore_raw_indexes = import_module("usage.migrations.0080_latency_histogram").restore_raw_indexes


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0080_latency_histogram"),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, restore_raw_indexes, elidable=False),
        migrations.AlterField(
            model_name="usagerecord",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="usage_records",
                to="usage.account",
            ),
        ),
        migrations.AlterField(
            model_name="usagerecord",
            name="api_key",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="usage.apikey",
            ),
        ),
        migrations.AlterField(
            model_name="usagerecord",
            name="exchange_rate",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="usage.exchangerate",
            ),
        ),
        migrations.AlterField(
            model_name="usagerecord",
            name="price",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="usage.modelprice",
            ),
        ),
        migrations.RunPython(restore_raw_indexes, migrations.RunPython.noop, elidable=False),
    ]
