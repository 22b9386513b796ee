# The registry of request ids: (account, request_id) becomes unique there instead of on the
# records, which are partitioned by month on PostgreSQL (a partitioned table's unique indexes
# must include the partition key). Backfilled from the records before their constraint goes.

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
INSERT INTO usage_registeredrequest (account_id, request_id, occurred_at, content_hash)
SELECT account_id, request_id, occurred_at, content_hash FROM usage_usagerecord
"""


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
        migrations.RemoveConstraint(
            model_name='usagerecord',
            name='usagerecord_unique_request',
        ),
    ]
