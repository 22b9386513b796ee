"""Failed calls are no longer billed: stored ones get what ingestion now gives them.

A failed call without reported usage used to get estimated tokens and a cost; it now
has no tokens, `tokens_source` none and a cost of zero (its logged lengths stay). This
corrects the stored records and moves both rollups by exactly the difference, printing
what changed per account. Allocations and the wallet's usage charges follow through
billing's migration 0003, which asks for them to be recomputed. `manage.py
correct_failed_calls` runs the same correction at any time.

Not reversible in data: the estimates are not kept (reversing leaves the records as they are).
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def correct(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    from usage.corrections import zero_failed_calls

    for correction in zero_failed_calls(apps):
        print(f"\n  {correction.describe()}", end="")


class Migration(migrations.Migration):
    atomic = False  # one transaction per chunk of records, as the command does

    dependencies = [("usage", "0010_calls_and_rates")]

    operations = [migrations.RunPython(correct, migrations.RunPython.noop, elidable=True)]
