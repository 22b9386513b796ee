"""One upstream call, one record: the identifiers that recognise a call whatever source
brings it, and the later sources' sightings of a call already counted."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from usage.models import MONEY, Account, RecordSource, UsageRecord


class CallKey(models.Model):
    """An identifier the provider gave one call ("response:<id>" for the response's `id`,
    "request:<id>" for its request id), and the record that counts that call.

    Unique per account, so that two sources recording the same call race for one row and
    exactly one of them counts it. The shape (account, key, record, occurred_at) is that of
    a registry of request ids: once records are partitioned by month, where a unique index
    cannot span partitions, each record's own `request_id` can be kept here too, and
    `occurred_at` finds the record's partition.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=220)
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="call_keys")
    occurred_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="callkey_unique_key")]

    def __str__(self) -> str:
        return self.key


class CallSighting(models.Model):
    """Another source's record of a call that `record` already counts ("seen by").

    Never counted in rollups, allocations or totals. Its own `request_id` stays the
    idempotency key of that source: a replay of it is a duplicate, other content under it a
    conflict. What that source said the call used is kept to compare the sources.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="sightings")
    request_id = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=RecordSource.choices)
    occurred_at = models.DateTimeField(help_text="As this source reported it")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY, null=True, blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "request_id"], name="callsighting_unique_request"),
        ]
        indexes = [models.Index(fields=["account", "occurred_at"], name="sighting_account_time_idx")]

    def __str__(self) -> str:
        return f"{self.request_id} (seen by {self.source})"
