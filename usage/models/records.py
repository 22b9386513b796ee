"""One usage record per request, what its columns may hold, and how long raw records are kept."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from usage.models.accounts import Account, ApiKey
from usage.models.amounts import TOTAL_MONEY
from usage.models.prices import ModelPrice


class TokensSource(models.TextChoices):
    REPORTED = "reported", gettext_lazy("Reported")
    ESTIMATED = "estimated", gettext_lazy("Estimated")
    NONE = "none", gettext_lazy("None")


class CostSource(models.TextChoices):
    REPORTED = "reported", gettext_lazy("Reported by provider")
    COMPUTED = "computed", gettext_lazy("Computed from price book")


class RecordSource(models.TextChoices):
    PROXY = "proxy", gettext_lazy("Proxy")
    API = "api", gettext_lazy("Ingestion API")
    IMPORT = "import", gettext_lazy("File import")
    SYNC = "sync", gettext_lazy("Provider sync")
    DEMO = "demo", gettext_lazy("Demo data")


class ErrorCause(models.TextChoices):
    NONE = "none", gettext_lazy("No error")
    INVALID_API_KEY = "invalid_api_key", gettext_lazy("Invalid API key")
    KEY_DISABLED = "key_disabled", gettext_lazy("Key disabled")
    INSUFFICIENT_QUOTA = "insufficient_quota", gettext_lazy("Insufficient quota")
    MODEL_UNAVAILABLE = "model_unavailable", gettext_lazy("Model unavailable")
    UNSUPPORTED_PARAMETER = "unsupported_parameter", gettext_lazy("Unsupported parameter")
    RATE_LIMITED = "rate_limited", gettext_lazy("Rate limited")
    UPSTREAM_ERROR = "upstream_error", gettext_lazy("Upstream error")
    TIMEOUT = "timeout", gettext_lazy("Timeout")
    CLIENT_CANCELLED = "client_cancelled", gettext_lazy("Cancelled by client")
    OTHER = "other", gettext_lazy("Other error")


class UsageRecord(models.Model):
    """One API request. Prompts and outputs are never stored: only their lengths."""

    # No foreign-key constraint in the database on the four references below (db_constraint=False):
    # each cost a lookup of the referenced row per record written, together more than halving
    # the insert rate at 10M records (bench/README.md, "10 million records"). Ingestion writes
    # only keys, prices and rates it has just resolved or created in the same transaction, and
    # Django still carries out on_delete (CASCADE, SET_NULL) when a referenced row is deleted.
    # No index of its own: usage_log_idx starts with account_id and serves every account-scoped
    # query, and deleting an account (CASCADE) finds its records through it.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="usage_records", db_index=False, db_constraint=False
    )
    request_id = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    model = models.CharField(max_length=200)
    # Indexed for deleting a key in the admin: SET_NULL updates its records, one index probe per
    # partition instead of reading every record.
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    team = models.CharField(max_length=100, blank=True, default="")
    endpoint = models.CharField(max_length=200, default="/v1/chat/completions")
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(default=200)
    error_cause = models.CharField(max_length=32, choices=ErrorCause.choices, default=ErrorCause.NONE)
    error_type = models.CharField(max_length=100, blank=True, default="")
    error_code = models.CharField(max_length=100, blank=True, default="")
    # The upstream's error message as usage.error_causes.shown_message keeps it: capped, secrets
    # redacted, and (from the proxy) without passages of the request's text.
    error_message = models.CharField(max_length=500, blank=True, default="")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    tokens_source = models.CharField(max_length=16, choices=TokensSource.choices, default=TokensSource.NONE)
    estimator_version = models.CharField(max_length=64, blank=True, default="")
    context_chars = models.PositiveIntegerField(null=True, blank=True)
    context_bytes = models.PositiveIntegerField(null=True, blank=True)
    output_chars = models.PositiveIntegerField(null=True, blank=True)
    output_bytes = models.PositiveIntegerField(null=True, blank=True)
    message_count = models.PositiveIntegerField(null=True, blank=True)
    context_profile = models.JSONField(null=True, blank=True)
    output_profile = models.JSONField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(**TOTAL_MONEY, null=True, blank=True)
    cost_source = models.CharField(max_length=16, choices=CostSource.choices, blank=True, default="")
    # Indexed for deleting a price (admin, Settings → Prices): SET_NULL updates the records it valued.
    price = models.ForeignKey(
        ModelPrice, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    # The rate `cost` was converted at, when the price was in another currency than the account's.
    exchange_rate = models.ForeignKey(
        "usage.ExchangeRate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    # Ids the provider gave the call (its response's `id`; its request id, from a response header
    # or a console log): how the same call is recognised when another source brings it too.
    response_id = models.CharField(max_length=200, blank=True, default="")
    upstream_request_id = models.CharField(max_length=200, blank=True, default="")
    source = models.CharField(max_length=16, choices=RecordSource.choices)
    # The optional request parameters the call used, by name (usage.parameters: bit i is the
    # i-th known name); null when the source did not say.
    request_params = models.BigIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Digest of the record as submitted: a replay matches it, a conflict does not.
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        # (account, request_id) is unique through usage.models.identity.RegisteredRequest, which
        # every ingestion path writes in the records' transaction: on PostgreSQL this table is
        # partitioned by month, and a unique index here would have to include occurred_at.
        # Every index here is read by a named query (bench/explain_records.py measures each with
        # EXPLAIN (ANALYZE, BUFFERS); bench/README.md has the plans). Two more are created in
        # raw SQL by a migration: usage_failed_idx (0007: the errors page, the model page's errors
        # card, the request log filtered on failure or a cause). The model page's latency
        # percentiles read usage.models.LatencyHistogram, not the records (0080 dropped their index).
        indexes = [
            # The request log page and GET /api/v1/usage/records: newest first, keyset on
            # (occurred_at, id), at any depth; the CSV export; the allocation recompute's
            # records from a checkpoint (billing.recompute._records_from); seeded hours of the demo.
            models.Index(fields=["account", "-occurred_at", "-id"], name="usage_log_idx"),
            # One model's records in a window: the request log filtered on a model, repricing and
            # re-estimation of a price's model over its window (usage.pricing.repricing, usage.estimation.calibration).
            models.Index(fields=["account", "model", "-occurred_at"], name="usage_model_time_idx"),
            # The errors page's parameters that unsupported-parameter failures had in common
            # (usage.selectors.parameters.unsupported_parameter_findings), from the index alone:
            # without it the query read a heap page per failed request of the month.
            models.Index(
                fields=["account", "occurred_at"],
                include=["model", "request_params"],
                condition=models.Q(error_cause="unsupported_parameter"),
                name="usage_unsupported_idx",
            ),
            # A request's neighbours of the same key (its page links to them).
            models.Index(fields=["account", "api_key", "-occurred_at", "-id"], name="usage_key_time_idx"),
            # Which rates a window's costs were converted at (and what a deleted rate leaves).
            models.Index(
                fields=["exchange_rate", "account", "occurred_at"],
                condition=models.Q(exchange_rate__isnull=False),
                name="usage_converted_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.request_id

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def is_error(self) -> bool:
        return self.error_cause != ErrorCause.NONE


class RawRetention(models.Model):
    """From when on the raw usage records are kept (one row; none: all of them are).

    `usage.partitions.apply_retention` moves `kept_from` forward before it drops a month, so
    whatever reads it (rebuild_rollups, the allocation recompute, the pages that say a
    period is summarised only) never expects records that are gone. It never moves back:
    raising RAW_RETENTION_MONTHS later brings nothing back.
    """

    kept_from = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"raw records kept from {self.kept_from:%Y-%m-%d}"

    @classmethod
    def kept_from_now(cls) -> datetime | None:
        return cls.objects.order_by("pk").values_list("kept_from", flat=True).first()

    @classmethod
    def advance(cls, cutoff: datetime) -> datetime:
        """Move `kept_from` forward to `cutoff` (never back); returns the value in force."""
        row, _ = cls.objects.get_or_create(pk=1, defaults={"kept_from": cutoff})
        if row.kept_from < cutoff:
            cls.objects.filter(pk=1).update(kept_from=cutoff, updated_at=timezone.now())
            return cutoff
        return row.kept_from
