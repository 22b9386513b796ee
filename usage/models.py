"""Accounts, keys, per-request usage and its rollups, and the price book (docs/architecture.md, Data model).

Exchange rates live in `usage.models_rates`, call identities and sightings in
`usage.models_identity`; both are imported at the end of this module.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy

from toki_dashboard import crypto


class DecimalSize(TypedDict):
    """max_digits and decimal_places of a DecimalField, spread into it with **."""

    max_digits: int
    decimal_places: int


MONEY: DecimalSize = DecimalSize(max_digits=24, decimal_places=10)  # a price or an amount someone enters
# A record's cost and every sum of costs (rollups, allocations, the wallet's usage charges).
# A record costs less than 2·10^17 (a reported cost is below usage.schemas.MAX_RECORD_COST;
# a computed one is at most a MONEY price per million tokens × 2·10^9 tokens); 28 digits
# before the point hold 10^10 such records, so no accepted batch overflows a total.
TOTAL_MONEY = DecimalSize(max_digits=38, decimal_places=10)
CURRENCY_CODE: RegexValidator = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code such as USD.")


class Provider(models.TextChoices):
    MANUAL = "manual", gettext_lazy("Manual (balances recorded by finance)")
    OPENAI_BILLING = "openai_billing", gettext_lazy("OpenAI-style billing endpoints")
    NEWAPI_CONSOLE = "newapi_console", gettext_lazy("New API console")


def dashboard_time_zone() -> str:
    return settings.DASHBOARD_TIME_ZONE


class Account(models.Model):
    """A TOKI account: where its API lives, how to read its balance, and in what currency."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500)
    currency = models.CharField(max_length=3, default="USD", validators=[CURRENCY_CODE])
    provider = models.CharField(max_length=32, choices=Provider.choices, default=Provider.MANUAL)
    # Fernet token of a JSON object; never shown back in full, never logged.
    credentials_encrypted = models.TextField(blank=True, default="")
    credentials_hint = models.CharField(max_length=32, blank=True, default="")
    sync_interval_minutes = models.PositiveIntegerField(default=5)
    created_at = models.DateTimeField(default=timezone.now)
    # The time zone whose days the account's DailyUsage rows hold; pages fall back to the
    # hourly rollup while it differs from DASHBOARD_TIME_ZONE (until rebuild_rollups).
    daily_rollup_zone = models.CharField(max_length=64, default=dashboard_time_zone, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_credentials(self, values: dict[str, str]) -> None:
        cleaned = {k: v for k, v in values.items() if v}
        self.credentials_encrypted = crypto.encrypt(json.dumps(cleaned)) if cleaned else ""
        secret = cleaned.get("api_key") or cleaned.get("access_token") or ""
        self.credentials_hint = f"…{secret[-4:]}" if len(secret) >= 8 else ("set" if cleaned else "")

    def get_credentials(self) -> dict[str, str]:
        if not self.credentials_encrypted:
            return {}
        return json.loads(crypto.decrypt(self.credentials_encrypted))

    @classmethod
    def default_base_url(cls) -> str:
        return settings.TOKI_BASE_URL


class ApiKey(models.Model):
    """A TOKI API key as seen in usage: by name, or by the hash and last four of its secret."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    # "name:<name>" or "sha256:<hex>": one row per key however it was first seen.
    fingerprint = models.CharField(max_length=300)
    name = models.CharField(max_length=200)
    last4 = models.CharField(max_length=4, blank=True, default="")
    team = models.CharField(max_length=100, blank=True, default="")
    provider_status = models.CharField(max_length=32, blank=True, default="")
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "fingerprint"], name="apikey_unique_fingerprint"),
        ]

    def __str__(self) -> str:
        return self.name


class TokensSource(models.TextChoices):
    REPORTED = "reported", "Reported"
    ESTIMATED = "estimated", "Estimated"
    NONE = "none", "None"


class CostSource(models.TextChoices):
    REPORTED = "reported", "Reported by provider"
    COMPUTED = "computed", "Computed from price book"


class RecordSource(models.TextChoices):
    PROXY = "proxy", "Proxy"
    API = "api", "Ingestion API"
    IMPORT = "import", "File import"
    SYNC = "sync", "Provider sync"
    DEMO = "demo", "Demo data"


class ErrorCause(models.TextChoices):
    NONE = "none", "No error"
    INVALID_API_KEY = "invalid_api_key", "Invalid API key"
    KEY_DISABLED = "key_disabled", "Key disabled"
    INSUFFICIENT_QUOTA = "insufficient_quota", "Insufficient quota"
    MODEL_UNAVAILABLE = "model_unavailable", "Model unavailable"
    UNSUPPORTED_PARAMETER = "unsupported_parameter", "Unsupported parameter"
    RATE_LIMITED = "rate_limited", "Rate limited"
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    TIMEOUT = "timeout", "Timeout"
    CLIENT_CANCELLED = "client_cancelled", "Cancelled by client"
    OTHER = "other", "Other error"


class PriceSource(models.TextChoices):
    GENAI_PRICES = "genai-prices", "genai-prices"
    PROVIDER = "provider", gettext_lazy("Provider")
    MANUAL = "manual", gettext_lazy("Manual")


class ModelPrice(models.Model):
    """Price per million tokens for a model (exact name or glob pattern) over a period."""

    account = models.ForeignKey(
        Account,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="prices",
        help_text="Empty: applies to every account.",
    )
    model_pattern = models.CharField(max_length=200, help_text="Exact model name, or a glob such as gpt-4o*")
    input_per_mtok = models.DecimalField(**MONEY)
    cached_input_per_mtok = models.DecimalField(**MONEY, null=True, blank=True)
    output_per_mtok = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=PriceSource.choices, default=PriceSource.MANUAL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model_pattern", "-effective_from"]
        indexes = [models.Index(fields=["model_pattern", "effective_from"])]

    def __str__(self) -> str:
        return f"{self.model_pattern} from {self.effective_from:%Y-%m-%d}"

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.model_pattern for ch in "*?[")


class UsageRecord(models.Model):
    """One API request. Prompts and outputs are never stored: only their lengths."""

    # No index of its own: usage_log_idx starts with account_id and serves every account-scoped
    # query, and deleting an account (CASCADE) finds its records through it.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_records", db_index=False)
    request_id = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    model = models.CharField(max_length=200)
    # Indexed for deleting a key in the admin: SET_NULL updates its records, one index probe per
    # partition instead of reading every record.
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    team = models.CharField(max_length=100, blank=True, default="")
    endpoint = models.CharField(max_length=200, default="/v1/chat/completions")
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(default=200)
    error_cause = models.CharField(max_length=32, choices=ErrorCause.choices, default=ErrorCause.NONE)
    error_type = models.CharField(max_length=100, blank=True, default="")
    error_code = models.CharField(max_length=100, blank=True, default="")
    # The upstream's error message as usage.errors.shown_message keeps it: capped, secrets
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
    price = models.ForeignKey(ModelPrice, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # The rate `cost` was converted at, when the price was in another currency than the account's.
    exchange_rate = models.ForeignKey(
        "usage.ExchangeRate", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
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
        # (account, request_id) is unique through usage.models_identity.RegisteredRequest, which
        # every ingestion path writes in the records' transaction: on PostgreSQL this table is
        # partitioned by month, and a unique index here would have to include occurred_at.
        # Every index here is read by a named query (bench/explain_records.py measures each with
        # EXPLAIN (ANALYZE, BUFFERS); bench/README.md has the plans). Two more are created in
        # raw SQL by migrations: usage_failed_idx (0007: the errors page, the model page's errors
        # card, the request log filtered on failure or a cause) and usage_model_latency_idx
        # (0009: the model page's latency percentiles, from the index alone).
        indexes = [
            # The request log page and GET /api/v1/usage/records: newest first, keyset on
            # (occurred_at, id), at any depth; the CSV export; the allocation recompute's
            # records from a checkpoint (billing.recompute._records_from); seeded hours of the demo.
            models.Index(fields=["account", "-occurred_at", "-id"], name="usage_log_idx"),
            # One model's records in a window: the request log filtered on a model, repricing and
            # re-estimation of a price's model over its window (usage.repricing, usage.calibration).
            models.Index(fields=["account", "model", "-occurred_at"], name="usage_model_time_idx"),
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


class UsageTotals(models.Model):
    """What both rollups hold: the group (with the time bucket each adds) and the summed columns."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
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


class Membership(models.Model):
    """A dashboard user's access to an account. What they may do there is their role (a group,
    the same in every account they belong to); admins see every account without one."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_memberships")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account", "user"]
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.account}"


class TokenScope(models.TextChoices):
    INGEST = "ingest", gettext_lazy("Send usage (POST /api/v1/usage)")
    READ = "read", gettext_lazy("Read usage and balances (GET endpoints)")
    BILLING = "billing", gettext_lazy("Record purchases and wallet entries")
    PROXY = "proxy", gettext_lazy("Call TOKI through the logging proxy (when PROXY_REQUIRE_TOKEN is on)")
    METRICS = "metrics", gettext_lazy("Scrape Prometheus metrics (GET /metrics)")


class ApiToken(models.Model):
    """A bearer token for the dashboard's own API, scoped to one account.

    Only a SHA-256 of the token is stored: tokens are long random strings, so a
    fast hash is as safe as a slow one and keeps every API call cheap.
    """

    PREFIX = "toki_"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200)
    scopes = models.JSONField(default=list)
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16, help_text="The token's first characters, to recognise it")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return self.is_active and scope in self.scopes


class RepricingRun(models.Model):
    """Progress of one background repricing of an account's records, so pages can say
    "Repricing N records…" while it runs. Counters move with each committed chunk."""

    # A run not updated for this long is taken as dead (worker lost) and no longer shown.
    STALE_AFTER = timedelta(minutes=15)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    total = models.BigIntegerField(help_text="Records to look at when the run started")
    done = models.BigIntegerField(default=0)
    changed = models.BigIntegerField(default=0, help_text="Records whose cost changed")
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "finished_at"], name="repricing_account_open_idx")]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.done}/{self.total}"


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


class EstimatorFit(models.Model):
    """Coefficients of the calibrated token estimator for one model, family or all models
    (README "Calibrated token estimation"), with the error measured on records it was not trained on.

    Refits add rows; the one in use for a (scope, kind) is `active`, and an estimated
    record names it in its `estimator_version` ("calibrated-<id>").
    """

    class Kind(models.TextChoices):
        PROFILE = "profile", "Character-class profile"
        LENGTHS = "lengths", "Characters and bytes"

    scope = models.CharField(max_length=220, help_text='A model name, "family:<name>", or "*" for all models')
    kind = models.CharField(max_length=16, choices=Kind.choices)
    weights = models.JSONField(help_text="Feature name → tokens per unit")
    samples = models.PositiveIntegerField(help_text="Records trained on")
    holdout_samples = models.PositiveIntegerField(help_text="Records the errors were measured on")
    median_error = models.FloatField(help_text="Median relative error of total tokens on held-out records")
    p90_error = models.FloatField(help_text="90th percentile of the same")
    fallback_median_error = models.FloatField(help_text="The fallback estimator's median error on the same records")
    fallback_p90_error = models.FloatField()
    active = models.BooleanField(default=False)
    trained_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["scope", "kind", "-trained_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "kind"], condition=models.Q(active=True), name="estimatorfit_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} ({self.kind}) #{self.pk}"

    @property
    def version(self) -> str:
        return f"calibrated-{self.pk}"


# Models of their own modules, which build on the ones above (re-exported from here).
# The model catalogue's tables live in their own module; importing them here registers them.
from usage.catalogue.models import CatalogueModel, CatalogueSync  # noqa: E402,F401
from usage.dead_letter_model import DeadLetter  # noqa: E402, F401  (in a module of its own)
from usage.import_jobs.models import ImportJob as ImportJob  # noqa: E402
from usage.import_jobs.models import ImportRejection as ImportRejection  # noqa: E402
from usage.models_identity import CallKey as CallKey  # noqa: E402
from usage.models_identity import CallSighting as CallSighting  # noqa: E402
from usage.models_identity import RegisteredRequest as RegisteredRequest  # noqa: E402
from usage.models_language import UserLanguage as UserLanguage  # noqa: E402
from usage.models_parameters import AcceptedParameter as AcceptedParameter  # noqa: E402
from usage.models_rates import ExchangeRate as ExchangeRate  # noqa: E402
from usage.models_rates import RateSource as RateSource  # noqa: E402
