"""The hourly and daily rollups: usage summed per group, kept exact with the records they count."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models.functions import Coalesce

from usage.models.accounts import Account, ApiKey
from usage.models.amounts import TOTAL_MONEY


class UsageTotals(models.Model):
    """What both rollups hold: the group (with the time bucket each adds) and the summed columns."""

    # Derived data, written by ingestion in every batch: no database constraint checked per
    # inserted group (Django still carries out on_delete), and no index of the account alone
    # (the bucket index and the unique group both start with it). bench/README.md, "Less Python per record".
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    model = models.CharField(max_length=200)
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    team = models.CharField(max_length=100, blank=True, default="")
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    estimated_requests = models.BigIntegerField(default=0)
    estimated_tokens = models.BigIntegerField(default=0)
    unpriced_requests = models.BigIntegerField(default=0)
    cost = models.DecimalField(**TOTAL_MONEY, default=Decimal(0))
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_count = models.BigIntegerField(default=0)

    # Summed columns, in the order the upsert and the rebuild use them.
    COUNTERS = (
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "estimated_requests",
        "estimated_tokens",
        "unpriced_requests",
        "cost",
        "latency_ms_sum",
        "latency_count",
    )

    class Meta:
        abstract = True


class HourlyUsage(UsageTotals):
    """Usage summed per (account, UTC hour, model, key, team): hourly charts and time windows read it."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            # COALESCE so that "no key" is one group, on SQLite as on PostgreSQL.
            models.UniqueConstraint(
                "account", "hour", "model", Coalesce("api_key", 0), "team", name="hourlyusage_unique_group"
            ),
        ]
        indexes = [models.Index(fields=["account", "hour"], name="hourly_account_hour_idx")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.model}"


class DailyUsage(UsageTotals):
    """Usage summed per (account, day in DASHBOARD_TIME_ZONE, model, key, team).

    Pages pick whole days, so their totals and tables read this: a month is some
    thousands of rows instead of a hundred thousand hourly ones. Days follow the
    dashboard's time zone; after changing DASHBOARD_TIME_ZONE, `manage.py
    rebuild_rollups` recomputes them (`manage.py check --database default` says so).
    """

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "account", "day", "model", Coalesce("api_key", 0), "team", name="dailyusage_unique_group"
            ),
        ]
        indexes = [models.Index(fields=["account", "day"], name="daily_account_day_idx")]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.model}"


class LatencyHistogram(models.Model):
    """Requests per latency bucket (usage.latency) of each model and day in DASHBOARD_TIME_ZONE.

    The model page's latency percentiles read it instead of sorting a month of records; it is
    added to with the rollups, in the same transaction, and rebuilt and verified with them.
    """

    # No index of its own: the unique key starts with the account. No constraint checked per
    # inserted bucket: derived data, as the rollups (Django still carries out on_delete).
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    model = models.CharField(max_length=200)
    day = models.DateField()
    bucket = models.SmallIntegerField()
    requests = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "model", "day", "bucket"], name="latencyhistogram_unique_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.model} bucket {self.bucket}"
