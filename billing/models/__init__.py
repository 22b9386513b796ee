"""Token Plans, purchases, the wallet ledger, allocations, provider sync and the audit trail.

Nothing here is edited in place or deleted by the application: a purchase is
voided (who, when, why), a wallet entry is reversed by a new entry, and every
change leaves an AuditEvent. Allocations and expiries are derived data, rewritten
by `billing.services.refresh_allocations` from a checkpoint.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy

from usage.models import CURRENCY_CODE, MONEY, TOTAL_MONEY, Account, UsageRecord


class TokenBasis(models.TextChoices):
    """Which of a request's tokens a plan counts."""

    TOTAL = "total", "Prompt + completion tokens"
    UNCACHED = "uncached", "Prompt + completion, cached prompt tokens excluded"
    COMPLETION = "completion", "Completion tokens only"


def models_match(patterns: list[str] | tuple[str, ...], model: str) -> bool:
    """True when `model` is one of the names or globs; an empty list allows every model."""
    return not patterns or any(p == model or fnmatchcase(model, p) for p in patterns)


class TokenPlan(models.Model):
    """A plan TOKI sells (the catalogue): the defaults a purchase starts from."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="token_plans")
    name = models.CharField(max_length=200)
    tokens = models.BigIntegerField()
    price = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    validity_days = models.PositiveIntegerField(default=30)
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model names or globs; empty = every model")
    priority = models.IntegerField(default=0, help_text="Higher burns first")
    token_basis = models.CharField(max_length=16, choices=TokenBasis.choices, default=TokenBasis.TOTAL)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account", "name"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="tokenplan_unique_name")]

    def __str__(self) -> str:
        return self.name


class PlanPurchase(models.Model):
    """A grant of tokens, valid from `effective_at` (inclusive) to `expires_at` (exclusive)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="plan_purchases")
    plan = models.ForeignKey(TokenPlan, on_delete=models.RESTRICT, related_name="purchases")
    name = models.CharField(max_length=200, help_text="The plan's name when it was bought")
    tokens = models.BigIntegerField()
    price = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    effective_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model names or globs; empty = every model")
    priority = models.IntegerField(default=0, help_text="Higher burns first")
    token_basis = models.CharField(max_length=16, choices=TokenBasis.choices, default=TokenBasis.TOTAL)
    paid_from_wallet = models.BooleanField(default=False)
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64, help_text="Digest of what was submitted, to tell replays")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_via = models.CharField(max_length=200, blank=True, default="")
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    voided_via = models.CharField(max_length=200, blank=True, default="")
    void_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-effective_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="planpurchase_unique_key"),
            models.CheckConstraint(condition=Q(tokens__gt=0), name="planpurchase_tokens_positive"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("effective_at")), name="planpurchase_window"),
        ]
        indexes = [models.Index(fields=["account", "expires_at"], name="purchase_account_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.tokens:,} tokens from {self.effective_at:%Y-%m-%d})"

    def covers(self, model: str) -> bool:
        return models_match(self.allowed_models, model)


class WalletEntryKind(models.TextChoices):
    TOP_UP = "top_up", gettext_lazy("Top-up")
    PLAN_PURCHASE = "plan_purchase", gettext_lazy("Plan purchase")
    USAGE_CHARGE = "usage_charge", gettext_lazy("Usage not covered by plans")
    REFUND = "refund", gettext_lazy("Refund")
    ADJUSTMENT = "adjustment", gettext_lazy("Adjustment")


# What finance (or a script) may record; the others are posted by the application.
MANUAL_WALLET_KINDS = (WalletEntryKind.TOP_UP, WalletEntryKind.REFUND, WalletEntryKind.ADJUSTMENT)


class WalletEntry(models.Model):
    """One line of the append-only wallet ledger; the balance is the sum of the amounts.

    Usage charges are posted per UTC day (`usage_day`) as the difference between the
    wallet allocations of that day and what was already posted for it, so the entries
    of a day always add up to its allocations, and late records add a line instead of
    changing one.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="wallet_entries")
    kind = models.CharField(max_length=16, choices=WalletEntryKind.choices)
    # Wide: a usage charge is a day's sum of record costs.
    amount = models.DecimalField(**TOTAL_MONEY, help_text="Signed: money in is positive, money out negative")
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    occurred_at = models.DateTimeField()
    note = models.TextField(blank=True, default="")
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    purchase = models.ForeignKey(
        PlanPurchase, on_delete=models.RESTRICT, null=True, blank=True, related_name="wallet_entries"
    )
    reverses = models.OneToOneField(
        "self", on_delete=models.RESTRICT, null=True, blank=True, related_name="reversed_by"
    )
    usage_day = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_via = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "wallet entries"
        constraints = [
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="walletentry_unique_key"),
        ]
        indexes = [
            models.Index(fields=["account", "occurred_at"], name="wallet_account_time_idx"),
            models.Index(fields=["account", "kind", "usage_day"], name="wallet_usage_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency}"


class Allocation(models.Model):
    """Where a record's tokens went: to a purchase (`purchase` set) or to the wallet.

    Every allocated record has at least one row, so records without any are the ones
    still to allocate. Every row carries the record's cost when it was allocated
    (`record_cost`, None when it had no price); wallet rows carry the money charged,
    computed from it (`amount`, None when the record had no price).
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    # No database constraint: the records are partitioned by month on PostgreSQL (a foreign
    # key into them would need a unique key on (id, occurred_at)), and allocations outlive the
    # raw partitions retention drops (RAW_RETENTION_MONTHS). The recompute writes allocations
    # only for records it has just read, under the account's lock, so the check adds nothing.
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    occurred_at = models.DateTimeField()
    purchase = models.ForeignKey(
        PlanPurchase, on_delete=models.RESTRICT, null=True, blank=True, related_name="allocations"
    )
    tokens = models.BigIntegerField()
    amount = models.DecimalField(**TOTAL_MONEY, null=True, blank=True)
    # What the record looked like when it was allocated, to notice when repricing or
    # re-estimation changes it: its prompt + completion tokens, and its cost.
    record_tokens = models.BigIntegerField(default=0)
    record_cost = models.DecimalField(**TOTAL_MONEY, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "occurred_at"], name="allocation_account_time_idx"),
            models.Index(fields=["purchase", "occurred_at"], name="allocation_purchase_time_idx"),
        ]

    def __str__(self) -> str:
        target = f"purchase {self.purchase_id}" if self.purchase_id else "wallet"
        return f"record {self.record_id} → {target}: {self.tokens} tokens"


class PlanExpiry(models.Model):
    """Tokens of a purchase left unused when it expired (zero when it was used up)."""

    purchase = models.OneToOneField(PlanPurchase, on_delete=models.CASCADE, related_name="expiry")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    tokens = models.BigIntegerField()
    expired_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "plan expiries"

    def __str__(self) -> str:
        return f"{self.tokens:,} tokens expired at {self.expired_at:%Y-%m-%d %H:%M}"


class BillingState(models.Model):
    """Per-account allocation bookkeeping; its row is the lock that serialises recomputes."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="billing_state")
    # Records with an id up to here are known to be allocated; only later ids are scanned.
    settled_record_id = models.BigIntegerField(default=0)
    # The highest id seen at `candidate_at`; it becomes settled once no transaction that
    # could still insert a lower id can be open.
    candidate_record_id = models.BigIntegerField(default=0)
    candidate_at = models.DateTimeField(null=True, blank=True)
    costs_checked_at = models.DateTimeField(null=True, blank=True)
    last_allocated_at = models.DateTimeField(null=True, blank=True)
    last_checkpoint = models.DateTimeField(null=True, blank=True)
    drift_threshold_amount = models.DecimalField(max_digits=24, decimal_places=10, default=1)
    drift_threshold_percent = models.DecimalField(max_digits=6, decimal_places=2, default=5)
    # The time zone whose days the account's DailyPaid rows hold ("" before the first build):
    # while it differs from DASHBOARD_TIME_ZONE, paid is read from the allocations instead.
    paid_rollup_zone = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"billing state of {self.account_id}"


class DailyPaid(models.Model):
    """What was paid for usage per (account, day in DASHBOARD_TIME_ZONE, model, key, team,
    currency): plan-covered tokens at each purchase's effective rate (price ÷ tokens granted)
    and wallet charges. Derived from the allocations and rewritten with them by the recompute
    (`billing.paid`), so pages read paid without scanning allocations."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    model = models.CharField(max_length=200)
    api_key = models.ForeignKey("usage.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    team = models.CharField(max_length=100, blank=True, default="")
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    requests = models.BigIntegerField(default=0, help_text="Records allocated (counted in the account's currency)")
    plan_tokens = models.BigIntegerField(default=0)
    plan_paid = models.DecimalField(**TOTAL_MONEY, default=0)
    wallet_paid = models.DecimalField(**TOTAL_MONEY, default=0)
    # Of plan_paid: tokens of requests without a usage value (unpriced), so savings compare like with like.
    unpriced_paid = models.DecimalField(**TOTAL_MONEY, default=0)
    # Requests charged to the wallet without a price: what they cost the wallet is not known.
    unknown_requests = models.BigIntegerField(default=0)

    FIGURES = ("requests", "plan_tokens", "plan_paid", "wallet_paid", "unpriced_paid", "unknown_requests")

    class Meta:
        verbose_name_plural = "daily paid"
        constraints = [
            models.UniqueConstraint(
                "account", "day", "model", Coalesce("api_key", 0), "team", "currency", name="dailypaid_unique_group"
            ),
        ]
        indexes = [models.Index(fields=["account", "day"], name="dailypaid_account_day_idx")]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.model} {self.plan_paid + self.wallet_paid} {self.currency}"


class RecomputeRequest(models.Model):
    """Allocations from `from_time` on must be recomputed (a purchase was added or voided…)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    from_time = models.DateTimeField()
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"from {self.from_time:%Y-%m-%d %H:%M}: {self.reason}"


class BalanceSource(models.TextChoices):
    MANUAL = "manual", "Recorded by finance"
    OPENAI_BILLING = "openai_billing", "OpenAI-style billing endpoints"
    NEWAPI_CONSOLE = "newapi_console", "New API console"
    DEMO = "demo", "Demo data"


class BalanceSnapshot(models.Model):
    """What the provider reported at `taken_at`, with the raw answer kept."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="balance_snapshots")
    taken_at = models.DateTimeField()
    balance = models.DecimalField(**MONEY, null=True, blank=True, help_text="Money left, in `currency`")
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    token_balance = models.BigIntegerField(null=True, blank=True)
    used = models.DecimalField(**MONEY, null=True, blank=True, help_text="Lifetime spend reported, if any")
    request_count = models.BigIntegerField(null=True, blank=True, help_text="Lifetime requests reported, if any")
    raw = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=32, choices=BalanceSource.choices)
    sync_run = models.ForeignKey("SyncRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["account", "taken_at"], name="snapshot_account_time_idx")]

    def __str__(self) -> str:
        return f"{self.balance} {self.currency} at {self.taken_at:%Y-%m-%d %H:%M}"


class SyncState(models.Model):
    """Per-account provider sync: cursor, schedule, credential health and the latest outcome."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="sync_state")
    cursor = models.BigIntegerField(null=True, blank=True, help_text="Unix time the next log read starts from")
    last_dispatched_at = models.DateTimeField(null=True, blank=True)
    running_since = models.DateTimeField(null=True, blank=True)
    credentials_valid = models.BooleanField(default=True)
    credentials_error = models.TextField(blank=True, default="")
    # Digest of the credentials the provider rejected: new credentials make the account eligible again.
    rejected_credentials = models.CharField(max_length=64, blank=True, default="")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    drift = models.DecimalField(**TOTAL_MONEY, null=True, blank=True)
    drift_threshold = models.DecimalField(**TOTAL_MONEY, null=True, blank=True)
    drift_exceeded = models.BooleanField(default=False)
    drift_checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sync state of {self.account_id}"


class SyncTrigger(models.TextChoices):
    SCHEDULE = "schedule", gettext_lazy("Schedule")
    MANUAL = "manual", gettext_lazy("Sync now")
    COMMAND = "command", gettext_lazy("Command")


class SyncOutcome(models.TextChoices):
    RUNNING = "running", gettext_lazy("Running")
    SUCCESS = "success", gettext_lazy("Success")
    UNAVAILABLE = "unavailable", gettext_lazy("Provider unavailable (retried)")
    CREDENTIALS_REJECTED = "credentials_rejected", gettext_lazy("Credentials rejected")
    BAD_ANSWER = "bad_answer", gettext_lazy("Malformed or failed answer")
    NOT_CONFIGURED = "not_configured", gettext_lazy("Not configured")
    ERROR = "error", gettext_lazy("Internal error")


class SyncRun(models.Model):
    """One attempt to sync an account with its provider."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="sync_runs")
    provider = models.CharField(max_length=32)
    trigger = models.CharField(max_length=16, choices=SyncTrigger.choices)
    attempt = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=SyncOutcome.choices, default=SyncOutcome.RUNNING)
    error = models.TextField(blank=True, default="")
    rows_read = models.PositiveIntegerField(default=0)
    records_ingested = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    cursor_before = models.BigIntegerField(null=True, blank=True)
    cursor_after = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["account", "started_at"], name="syncrun_account_time_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.started_at:%Y-%m-%d %H:%M} {self.outcome}"

    @property
    def ok(self) -> bool:
        return self.outcome == SyncOutcome.SUCCESS


class AuditEvent(models.Model):
    """Who changed what, when: before and after, as JSON."""

    account = models.ForeignKey(Account, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_type} {self.object_id}"


class ProviderAccount(Account):
    """The accounts seen from the billing side: provider, credentials and sync (admin only)."""

    class Meta:
        proxy = True
        verbose_name = "provider sync"
        verbose_name_plural = "provider sync"


# Alert rules, their episodes and notifications, channels and budgets live in modules of their
# own (importing them here registers them with this app and re-exports them).
from billing.alert_models import (  # noqa: E402, F401
    MEASURED,
    AlertChannel,
    AlertDelivery,
    AlertEpisode,
    AlertKind,
    AlertNotification,
    AlertRule,
    ChannelKind,
    DeliveryStatus,
    NotificationKind,
    parse_tiers,
)
from billing.budget_models import Budget, BudgetMeasure, BudgetPeriod, BudgetScope  # noqa: E402, F401
