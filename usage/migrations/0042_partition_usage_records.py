# Usage records partitioned by month of occurred_at on PostgreSQL (SQLite keeps one table), and
# the raw-retention marker. The table is rebuilt as a partitioned one: a partition per month
# from the oldest record's to three months ahead, a default partition for anything else, the
# same columns, defaults, checks, foreign keys and indexes, and a primary key of
# (id, occurred_at), since a partitioned table's unique keys must include the partition key.
# The foreign keys that pointed at the records were dropped by the two migrations before.

from datetime import UTC, datetime

import django.utils.timezone
from django.db import migrations, models

TABLE = "usage_usagerecord"
OLD = "usage_usagerecord_unpartitioned"
AHEAD = 3


def _months(first, last):
    index, end = first.year * 12 + first.month - 1, last.year * 12 + last.month - 1
    while index <= end:
        yield datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
        index += 1


def _next(month):
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def _rebuild(cursor, *, partitioned):
    """Rename the table away, create the new one LIKE it, copy the rows, re-create the foreign
    keys and indexes under their names, and drop the old one."""
    cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s", [OLD]
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('f', 'p')",
        [OLD],
    )
    constraints = cursor.fetchall()
    for name, kind, _ in constraints:
        cursor.execute(f'ALTER TABLE {OLD} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
    tail = " PARTITION BY RANGE (occurred_at)" if partitioned else ""
    cursor.execute(
        f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY){tail}"
    )
    key = "(id, occurred_at)" if partitioned else "(id)"
    pk_name = next((name for name, kind, _ in constraints if kind == "p"), f"{TABLE}_pkey")
    cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{pk_name}" PRIMARY KEY {key}')
    if partitioned:
        cursor.execute(f"SELECT min(occurred_at), max(occurred_at) FROM {OLD}")
        first, last = cursor.fetchone()
        now = datetime.now(UTC)
        first = min(first or now, now)
        last = max(last or now, now)
        ahead = _next(_next(_next(datetime(last.year, last.month, 1, tzinfo=UTC))))
        for month in _months(first, ahead):
            cursor.execute(
                f"CREATE TABLE {TABLE}_p{month:%Y_%m} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
                [month, _next(month)],
            )
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
    cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), COALESCE((SELECT max(id) FROM {TABLE}), 0) + 1, false)"
    )
    for name, kind, definition in constraints:
        if kind == "f":
            cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')
    for name, definition in indexes:
        if name == pk_name:
            continue
        # "CREATE [UNIQUE] INDEX name ON public.old USING …": the same index on the new table.
        definition = definition.replace(" ON ONLY ", " ON ")
        cursor.execute(definition.replace(f" ON {OLD} ", f" ON {TABLE} ").replace(f".{OLD} ", f".{TABLE} "))
    cursor.execute(f"DROP TABLE {OLD}")


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite keeps one table
    with schema_editor.connection.cursor() as cursor:
        _rebuild(cursor, partitioned=True)


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        _rebuild(cursor, partitioned=False)


class Migration(migrations.Migration):

    dependencies = [
        ('usage', '0041_record_links_without_constraints'),
        ('billing', '0025_allocation_record_without_constraint'),
    ]

    operations = [
        migrations.CreateModel(
            name='RawRetention',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kept_from', models.DateTimeField()),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
