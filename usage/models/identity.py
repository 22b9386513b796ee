"""One upstream call, one record: the identifiers that recognise a call whatever source
brings it, and the later sources' sightings of a call already counted."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from usage.models.accounts import Account
from usage.models.amounts import MONEY
from usage.models.records import RecordSource, UsageRecord


class CallKey(models.Model):
    """An identifier the provider gave one call ("response:<id>" for the response's `id`,
    "request:<id>" for its request id), and the record that counts that call.

    Unique per account, so that two sources recording the same call race for one row and
    exactly one of them counts it. `record` carries no database constraint (see
    `RegisteredRequest`): the application writes the key in the record's transaction.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=220)
    # No database constraint: a foreign key into the monthly-partitioned records would need a
    # unique key on (id, occurred_at), and a dropped partition would cascade. Django's delete
    # still cascades; claim() writes the key in the same transaction as its record.
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="call_keys", db_constraint=False)
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
    # No database constraint, as CallKey.record: link() writes it with the id of a record it has
    # just found or inserted, in the same transaction.
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="sightings", db_constraint=False)
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


class RegisteredRequest(models.Model):
    """The idempotency key of every usage record: one row per (account, request_id).

    On PostgreSQL the records are partitioned by month of `occurred_at`, and a partitioned
    table's unique indexes must include the partition key, so they cannot make a request_id
    unique across months. This narrow table carries that unique key instead. `record_usage`
    inserts a batch's request ids here first (INSERT … ON CONFLICT DO NOTHING), and only the
    ids it registered become records, in the same transaction: a concurrent replay waits on
    the unique index and then finds the id taken. `content_hash` tells a replay from a
    conflict without reading the records, and `occurred_at` names the month the record is in.

    Rows outlive the raw records that retention drops (RAW_RETENTION_MONTHS): the rollups
    still count those records, so a replay of one must still be a duplicate.
    """

    # Written for every record: no constraint checked per row (the account exists while its
    # records arrive; Django carries out on_delete) and no index of the account alone (the
    # unique key starts with it).
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    request_id = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    content_hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "request_id"], name="registeredrequest_unique_request"),
        ]

    def __str__(self) -> str:
        return self.request_id
