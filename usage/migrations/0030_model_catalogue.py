# The model catalogue: models an account's provider lists, and each sync of that list.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('usage', '0025_memberships'),
    ]

    operations = [
        migrations.CreateModel(
            name='CatalogueModel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200)),
                ('owned_by', models.CharField(blank=True, default='', max_length=200)),
                ('context_length', models.PositiveBigIntegerField(blank=True, help_text='Tokens, as the provider says', null=True)),
                ('listed_created_at', models.DateTimeField(blank=True, help_text="The listing's `created`", null=True)),
                ('first_seen_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('last_seen_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('removed_at', models.DateTimeField(blank=True, null=True)),
                ('price_note', models.CharField(blank=True, default='', help_text="Why the provider's price is not a per-token price", max_length=200)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='catalogue', to='usage.account')),
            ],
            options={
                'ordering': ['account', 'name'],
                'constraints': [models.UniqueConstraint(fields=('account', 'name'), name='cataloguemodel_unique_name')],
            },
        ),
        migrations.CreateModel(
            name='CatalogueSync',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('trigger', models.CharField(choices=[('schedule', 'Schedule'), ('manual', 'Sync models now'), ('command', 'Command')], default='schedule', max_length=16)),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('outcome', models.CharField(choices=[('running', 'Running'), ('success', 'Success'), ('unavailable', 'Provider unavailable (retried)'), ('credentials_rejected', 'Credentials rejected'), ('bad_answer', 'Malformed or failed answer'), ('not_configured', 'Not configured'), ('error', 'Internal error')], default='running', max_length=32)),
                ('error', models.TextField(blank=True, default='')),
                ('source', models.CharField(blank=True, default='', help_text='What was read, e.g. /v1/models', max_length=100)),
                ('credentials_digest', models.CharField(blank=True, default='', max_length=64)),
                ('models_listed', models.PositiveIntegerField(default=0)),
                ('added', models.PositiveIntegerField(default=0)),
                ('removed', models.PositiveIntegerField(default=0)),
                ('returned', models.PositiveIntegerField(default=0)),
                ('prices_added', models.PositiveIntegerField(default=0)),
                ('prices_changed', models.PositiveIntegerField(default=0)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='catalogue_syncs', to='usage.account')),
            ],
            options={
                'ordering': ['-started_at', '-id'],
                'indexes': [models.Index(fields=['account', 'started_at'], name='cataloguesync_account_idx')],
                'constraints': [models.UniqueConstraint(condition=models.Q(('finished_at__isnull', True)), fields=('account',), name='cataloguesync_one_running')],
            },
        ),
    ]
