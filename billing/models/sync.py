"""Provider sync: balance snapshots, each account's sync state, the runs, and the admin's view
of accounts as provider connections."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from usage.models import CURRENCY_CODE, MONEY, TOTAL_MONEY, Account


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


class ProviderAccount(Account):
    """The accounts seen from the billing side: provider, credentials and sync (admin only)."""

    class Meta:
        proxy = True
        verbose_name = "provider sync"
        verbose_name_plural = "provider sync"
