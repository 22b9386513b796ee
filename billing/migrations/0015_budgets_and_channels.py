# Budgets, alert channels, notifications and their deliveries; severity tiers on rules and episodes.

import billing.models.budgets
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0011_wide_paid_rollup'),
        ('usage', '0030_model_catalogue'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='alertepisode',
            name='last_notified_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='alertepisode',
            name='notified_severity',
            field=models.PositiveSmallIntegerField(default=0, help_text='The most severe tier notified'),
        ),
        migrations.AddField(
            model_name='alertepisode',
            name='severity',
            field=models.PositiveSmallIntegerField(default=1, help_text='The tier the rule is in now'),
        ),
        migrations.AddField(
            model_name='alertrule',
            name='tiers',
            field=models.JSONField(blank=True, default=list, help_text="Severity tiers, least severe first; empty: the kind's standard tiers"),
        ),
        migrations.AlterField(
            model_name='alertepisode',
            name='summary',
            field=models.CharField(help_text='What the rule said when it started firing', max_length=300),
        ),
        migrations.AlterField(
            model_name='alertrule',
            name='cooldown_hours',
            field=models.PositiveIntegerField(default=24, help_text='A reminder every this many hours while it keeps firing; 0: no reminder'),
        ),
        migrations.AlterField(
            model_name='alertrule',
            name='kind',
            field=models.CharField(choices=[('token_balance_percent', 'Token balance below a percentage'), ('token_balance_tokens', 'Token balance below a number of tokens'), ('wallet_below', 'Wallet below an amount'), ('runout_within', 'Projected run-out within N days'), ('plan_expiring_unused', 'A plan expiring within N days with more than X% unused'), ('sync_failing', 'Provider sync failing or stale'), ('spend_spike', 'Daily spend above k× its trailing median'), ('error_surge', 'Surge of an error cause'), ('budget', 'A budget reaching its thresholds')], max_length=32),
        ),
        migrations.AlterField(
            model_name='alertrule',
            name='recipients',
            field=models.TextField(blank=True, default='', help_text='Email addresses, one per line or comma-separated (besides the channels)'),
        ),
        migrations.CreateModel(
            name='AlertChannel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('email', 'Email'), ('webhook', 'Webhook'), ('apprise', 'Chat (apprise URL)')], max_length=16)),
                ('name', models.CharField(blank=True, default='', max_length=200)),
                ('address', models.CharField(blank=True, default='', help_text='Email channels: the address', max_length=254)),
                ('url_encrypted', models.TextField(blank=True, default='')),
                ('secret_encrypted', models.TextField(blank=True, default='')),
                ('hint', models.CharField(blank=True, default='', help_text='What is shown of the target', max_length=300)),
                ('enabled', models.BooleanField(default=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alert_channels', to='usage.account')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['account', 'kind', 'id'],
            },
        ),
        migrations.CreateModel(
            name='AlertNotification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('firing', 'Firing'), ('escalated', 'Escalated'), ('reminder', 'Reminder'), ('resolved', 'Resolved'), ('test', 'Test')], max_length=16)),
                ('tier', models.PositiveSmallIntegerField(default=0, help_text='0: not firing (resolved, or a quiet test)')),
                ('severity', models.CharField(default='ok', max_length=16)),
                ('value', models.DecimalField(blank=True, decimal_places=6, max_digits=38, null=True)),
                ('threshold', models.DecimalField(blank=True, decimal_places=6, max_digits=38, null=True)),
                ('subject', models.CharField(max_length=300)),
                ('details', models.JSONField(blank=True, default=dict, help_text='The numbers behind it, as sent')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='usage.account')),
                ('episode', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='billing.alertepisode')),
                ('rule', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='billing.alertrule')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='AlertDelivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('email', 'Email'), ('webhook', 'Webhook'), ('apprise', 'Chat (apprise URL)')], max_length=16)),
                ('target', models.CharField(help_text="Addresses, or the hint of the channel's URL", max_length=300)),
                ('recipients', models.JSONField(blank=True, default=list, help_text='Email deliveries: the addresses')),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending'), ('sent', 'Sent'), ('failed', 'Failed (retrying)'), ('gave_up', 'Failed')], default='pending', max_length=16)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('response_code', models.PositiveSmallIntegerField(blank=True, help_text='Webhooks: the last HTTP status', null=True)),
                ('error', models.TextField(blank=True, default='')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('last_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('channel', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='deliveries', to='billing.alertchannel')),
                ('notification', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='billing.alertnotification')),
            ],
            options={
                'verbose_name_plural': 'alert deliveries',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='Budget',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200)),
                ('scope', models.CharField(choices=[('account', 'The whole account'), ('team', 'A team'), ('api_key', 'An API key'), ('model', 'Models (name or glob)')], default='account', max_length=16)),
                ('target', models.CharField(blank=True, default='', help_text="The team, the key's name, or a model name or glob", max_length=200)),
                ('measure', models.CharField(choices=[('paid', 'Paid'), ('usage_value', 'Usage value'), ('tokens', 'Tokens')], default='paid', max_length=16)),
                ('amount', models.DecimalField(decimal_places=10, help_text="Money in the account's currency, or tokens", max_digits=38)),
                ('period', models.CharField(choices=[('day', 'Each day'), ('week', 'Each week'), ('month', 'Each month'), ('range', 'A fixed range of days')], default='month', max_length=8)),
                ('starts_on', models.DateField(blank=True, help_text='A fixed range: its first day', null=True)),
                ('ends_on', models.DateField(blank=True, help_text='A fixed range: its last day (inclusive)', null=True)),
                ('thresholds', models.JSONField(default=billing.models.budgets.default_thresholds, help_text='Percentages of the amount, e.g. [50, 80, 100]')),
                ('enforce', models.BooleanField(default=False, help_text='Once exhausted, the proxy refuses its calls (HTTP 429) until it resets')),
                ('idempotency_key', models.CharField(blank=True, default='', max_length=200)),
                ('request_hash', models.CharField(blank=True, default='', max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('created_via', models.CharField(blank=True, default='', max_length=200)),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='budgets', to='usage.account')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['account', 'name'],
            },
        ),
        migrations.AddField(
            model_name='alertrule',
            name='budget',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='alert_rule', to='billing.budget'),
        ),
        migrations.AddConstraint(
            model_name='alertnotification',
            constraint=models.UniqueConstraint(condition=models.Q(('episode__isnull', False), ('kind__in', ['firing', 'escalated', 'resolved'])), fields=('episode', 'kind', 'tier'), name='alertnotification_once_per_transition'),
        ),
        migrations.AddIndex(
            model_name='alertdelivery',
            index=models.Index(fields=['status', 'created_at'], name='alertdelivery_status_idx'),
        ),
        migrations.AddConstraint(
            model_name='budget',
            constraint=models.UniqueConstraint(fields=('account', 'name'), name='budget_unique_name'),
        ),
        migrations.AddConstraint(
            model_name='budget',
            constraint=models.UniqueConstraint(condition=models.Q(('idempotency_key', ''), _negated=True), fields=('account', 'idempotency_key'), name='budget_unique_key'),
        ),
        migrations.AddConstraint(
            model_name='budget',
            constraint=models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='budget_amount_positive'),
        ),
    ]
